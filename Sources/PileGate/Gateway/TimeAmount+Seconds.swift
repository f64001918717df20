import NIOCore

extension TimeAmount {
    /// Seconds as a time amount, for validated configuration values (≤ 86,400 s here); beyond
    /// what Int64 nanoseconds hold it saturates instead of trapping.
    static func fromSeconds(_ seconds: Double) -> TimeAmount {
        let ns = (seconds * 1e9).rounded()
        guard ns.isFinite else { return ns > 0 ? .nanoseconds(.max) : .zero }
        if ns >= 9.2e18 { return .nanoseconds(.max) }
        if ns <= -9.2e18 { return .nanoseconds(.min) }
        return .nanoseconds(Int64(ns))
    }
}
