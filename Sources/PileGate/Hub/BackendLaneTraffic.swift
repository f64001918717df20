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
    /// Delivery latency: from an event's send to its ack.
    public private(set) var latency = LatencyBuckets(bounds: BackendLaneTraffic.bounds)
    /// Upper bounds (seconds) of the delivery-latency histogram.
    public static let bounds: [Double] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    public var latencyCount: Int { latency.count }
    public var latencySumSeconds: Double { latency.sum }
    public var latencyBuckets: [Int] { latency.counts }

    init() {}

    /// One routed event (counted in place under the traffic lock: no copy of the buckets).
    mutating func count(fallback: Bool, overflow: Bool) {
        routed += 1
        if fallback { fallbacks += 1 }
        if overflow { overflows += 1 }
    }

    /// One ack, its latency, and whether it counted as a failure.
    mutating func acked(latency seconds: Double, failure: Bool) {
        acks += 1
        latency.observe(seconds)
        if failure { failures += 1 }
    }

    // The JSON shape `/v1/hub` and `/v1/stats` have always had: the histogram as three members.
    enum CodingKeys: String, CodingKey {
        case routed, fallbacks, acks, failures, ejections, overflows, latencyCount, latencySumSeconds, latencyBuckets
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        routed = try c.decode(Int.self, forKey: .routed)
        fallbacks = try c.decode(Int.self, forKey: .fallbacks)
        acks = try c.decode(Int.self, forKey: .acks)
        failures = try c.decode(Int.self, forKey: .failures)
        ejections = try c.decode(Int.self, forKey: .ejections)
        overflows = try c.decode(Int.self, forKey: .overflows)
        let counts = try c.decode([Int].self, forKey: .latencyBuckets)
        let sum = try c.decode(Double.self, forKey: .latencySumSeconds)
        guard let latency = LatencyBuckets(bounds: Self.bounds, counts: counts, sum: sum) else {
            throw DecodingError.dataCorruptedError(
                forKey: .latencyBuckets, in: c, debugDescription: "expected at most \(Self.bounds.count + 1) counts >= 0")
        }
        self.latency = latency
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(routed, forKey: .routed)
        try c.encode(fallbacks, forKey: .fallbacks)
        try c.encode(acks, forKey: .acks)
        try c.encode(failures, forKey: .failures)
        try c.encode(ejections, forKey: .ejections)
        try c.encode(overflows, forKey: .overflows)
        try c.encode(latencyCount, forKey: .latencyCount)
        try c.encode(latencySumSeconds, forKey: .latencySumSeconds)
        try c.encode(latencyBuckets, forKey: .latencyBuckets)
    }
}
