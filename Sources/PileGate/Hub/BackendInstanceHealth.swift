import NIOCore

/// Whether a backend instance may take work: its failure streak and ejections, apart from any
/// I/O or lock (the instance holds one under its lock and feeds it acks and failures).
///
/// An instance that fails `failuresToEject` times in a row is ejected for `baseEjection` ×
/// 2^(earlier ejections), capped at `maxEjection`. One stall is one *episode* and ejects once:
/// everything that was already in flight when the instance was ejected fails together later (at
/// the ack timeout, in bursts of hundreds), and those failures belong to the episode that ejected
/// it — counting every third of them as a new ejection ejected a briefly stalled instance for the
/// maximum period (issue 14.7). So a failure counts only for an event sent after the last
/// ejection began; the period grows only when the instance fails again on work it was given
/// after coming back.
struct BackendInstanceHealth: Sendable, Equatable {
    struct Policy: Sendable, Equatable {
        var failuresToEject: Int
        var baseEjection: TimeAmount
        var maxEjection: TimeAmount

        init(failuresToEject: Int, baseEjection: TimeAmount, maxEjection: TimeAmount) {
            self.failuresToEject = failuresToEject
            self.baseEjection = baseEjection
            self.maxEjection = maxEjection
        }

        init(_ config: HubConfiguration) {
            self.init(
                failuresToEject: config.failuresToEject, baseEjection: .fromSeconds(config.baseEjection),
                maxEjection: .fromSeconds(config.maxEjection))
        }
    }

    private(set) var consecutiveFailures = 0
    /// Ejections so far (what `/v1/hub` shows, and what the ejection counter adds up to).
    private(set) var ejections = 0
    /// When the last ejection began and ends.
    private(set) var ejectedAt: NIODeadline?
    private(set) var ejectedUntil: NIODeadline?

    /// Whether the instance is ejected at `now`.
    func isEjected(at now: NIODeadline) -> Bool {
        ejectedUntil.map { now < $0 } ?? false
    }

    /// An event sent at `sentAt` was acked in time.
    mutating func succeeded() {
        consecutiveFailures = 0
    }

    /// An event sent at `sentAt` failed (not acked in time, or an outlier slow ack). Returns the
    /// ejection period when this failure starts a new ejection episode, else nil.
    mutating func failed(sentAt: NIODeadline, now: NIODeadline, policy: Policy) -> TimeAmount? {
        // Work handed out before the last ejection began fails with that episode.
        if let ejectedAt, sentAt <= ejectedAt { return nil }
        consecutiveFailures += 1
        guard consecutiveFailures >= policy.failuresToEject else { return nil }
        consecutiveFailures = 0
        let period = Self.period(after: ejections, policy: policy)
        ejections += 1
        ejectedAt = now
        ejectedUntil = now + period
        return period
    }

    /// base × 2^n, capped at the maximum (without overflowing for large n).
    static func period(after ejections: Int, policy: Policy) -> TimeAmount {
        var period = policy.baseEjection
        for _ in 0..<min(ejections, 62) {
            guard period < policy.maxEjection else { break }
            period = period + period
        }
        return min(period, policy.maxEjection)
    }
}
