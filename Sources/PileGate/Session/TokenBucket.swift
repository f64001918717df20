import NIOCore

/// A token bucket: `rate` tokens a second up to `burst`. Pure value, no clock of its own, so it
/// can live inside per-connection state on an event loop and be tested with fake times.
public struct TokenBucket: Sendable, Equatable {
    public var rate: Double
    public var burst: Double
    /// Current balance; negative while in debt.
    public var tokens: Double
    @usableFromInline var last: NIODeadline

    public init(rate: Double, burst: Double, now: NIODeadline) {
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now
    }

    /// Takes `cost` tokens. Returns false (and leaves the bucket in debt) when there were not
    /// enough, so a caller can back off for `delayUntilPositive`.
    @inlinable
    public mutating func take(_ cost: Double, now: NIODeadline) -> Bool {
        refill(now: now)
        tokens -= cost
        return tokens >= 0
    }

    /// Takes `cost` only if available.
    public mutating func tryTake(_ cost: Double, now: NIODeadline) -> Bool {
        refill(now: now)
        guard tokens >= cost else { return false }
        tokens -= cost
        return true
    }

    @inlinable
    mutating func refill(now: NIODeadline) {
        let elapsed = Double((now - last).nanoseconds) / 1e9
        if elapsed > 0 {
            tokens = min(burst, tokens + elapsed * rate)
            last = now
        }
    }

    /// How long until the bucket holds `cost` tokens again.
    public func delay(until cost: Double = 0) -> TimeAmount {
        let missing = cost - tokens
        guard missing > 0 else { return .zero }
        return TimeAmount.fromSeconds((missing / rate))
    }
}
