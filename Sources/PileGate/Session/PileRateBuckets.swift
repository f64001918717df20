import NIOCore

/// The frame and byte token buckets of one session, packed: the two balances and one refill time,
/// with the rates in a shared `PileRates`. Both balances are refilled at every charge, so one
/// refill time serves both (refilling at an extra moment in between gives the same balance:
/// `min(burst, min(burst, a) + c) == min(burst, a + c)` for `c ≥ 0`). Same arithmetic as
/// `TokenBucket`.
struct PileRateBuckets {
    private(set) var rates: PileRates
    /// Current balances; negative while in debt.
    private(set) var frameTokens: Double
    private(set) var byteTokens: Double
    private var last: NIODeadline

    init(rates: PileRates, now: NIODeadline) {
        self.rates = rates
        self.frameTokens = rates.frameBurst
        self.byteTokens = rates.byteBurst
        self.last = now
    }

    /// Takes `frames` and `bytes`; false (and the buckets left in debt) when either had too few.
    mutating func take(frames: Int, bytes: Int, now: NIODeadline) -> Bool {
        let elapsed = Double((now - last).nanoseconds) / 1e9
        if elapsed > 0 {
            frameTokens = min(rates.frameBurst, frameTokens + elapsed * rates.frameRate)
            byteTokens = min(rates.byteBurst, byteTokens + elapsed * rates.byteRate)
            last = now
        }
        var ok = true
        if frames > 0 {
            frameTokens -= Double(frames)
            ok = frameTokens >= 0
        }
        byteTokens -= Double(bytes)
        return ok && byteTokens >= 0
    }

    /// How long until both balances are back to zero.
    var delayUntilPositive: TimeAmount {
        let frames = frameTokens < 0 ? TimeAmount.fromSeconds(-frameTokens / rates.frameRate) : .zero
        let bytes = byteTokens < 0 ? TimeAmount.fromSeconds(-byteTokens / rates.byteRate) : .zero
        return max(frames, bytes)
    }
}
