import Foundation

/// What the hub counts per (lane, service): events routed, base-lane fallbacks, acks, delivery
/// failures, ejections, queue overflows and the delivery-latency histogram. `/v1/hub` shows it
/// and `/metrics` exports it.
public struct BackendLaneTraffic: Codable, Sendable {
    public var routed = 0
    public var fallbacks = 0
    public var acks = 0
    public var failures = 0
    public var ejections = 0
    public var overflows = 0
    public var latencyCount = 0
    public var latencySumSeconds = 0.0
    public var latencyBuckets: [Int] = Array(repeating: 0, count: BackendLaneTraffic.bounds.count + 1)
    /// Upper bounds (seconds) of the delivery-latency histogram.
    public static let bounds: [Double] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// One routed event (counted in place under the traffic lock: no copy of the buckets).
    mutating func count(fallback: Bool, overflow: Bool) {
        routed += 1
        if fallback { fallbacks += 1 }
        if overflow { overflows += 1 }
    }

    /// One ack, its latency, and whether it counted as a failure.
    mutating func acked(latency seconds: Double, failure: Bool) {
        acks += 1
        observe(seconds)
        if failure { failures += 1 }
    }

    mutating func observe(_ seconds: Double) {
        latencyCount += 1
        latencySumSeconds += seconds
        let i = Self.bounds.firstIndex { seconds <= $0 } ?? Self.bounds.count
        latencyBuckets[i] += 1
    }

    /// Approximate quantile from the buckets (upper bound of the bucket holding it).
    func quantile(_ q: Double) -> Double? {
        guard latencyCount > 0 else { return nil }
        let target = Int((Double(latencyCount) * q).rounded(.up))
        var seen = 0
        for (i, n) in latencyBuckets.enumerated() {
            seen += n
            if seen >= target { return i < Self.bounds.count ? Self.bounds[i] : Self.bounds.last.map { $0 * 2 } }
        }
        return nil
    }
}
