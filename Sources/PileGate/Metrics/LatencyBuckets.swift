/// A latency histogram over fixed bucket bounds (seconds): the one shape the gateway counts
/// latencies in, exports on `/metrics` and reads back (`pilegate stats`).
///
/// `counts[i]` observations fell in `(bounds[i-1], bounds[i]]`, `counts[bounds.count]` above the
/// last bound; `sum` is the total of the observed seconds. A value type: its owner counts into it
/// under its own lock, `MetricsWriter` writes it in the Prometheus exposition format, and a reader
/// rebuilds it from exported counts to take quantiles over an interval (`since`).
public struct LatencyBuckets: Sendable, Equatable {
    /// Ascending upper bounds (seconds); the last bucket, above them, has none.
    public let bounds: [Double]
    public private(set) var counts: [Int]
    public private(set) var sum: Double

    public init(bounds: [Double]) {
        self.bounds = bounds
        self.counts = Array(repeating: 0, count: bounds.count + 1)
        self.sum = 0
    }

    /// Counts as they were exported: one per bound, plus (optionally) the one above the last
    /// bound. Nil when there are more counts than that, or a negative one.
    public init?(bounds: [Double], counts: [Int], sum: Double = 0) {
        guard counts.count <= bounds.count + 1, counts.allSatisfy({ $0 >= 0 }) else { return nil }
        self.bounds = bounds
        self.counts = counts + Array(repeating: 0, count: bounds.count + 1 - counts.count)
        self.sum = sum
    }

    public var count: Int { counts.reduce(0, +) }

    public mutating func observe(_ seconds: Double) {
        let i = bounds.firstIndex { seconds <= $0 } ?? bounds.count
        counts[i] += 1
        sum += seconds
    }

    /// What was observed after `earlier` (a snapshot of the same histogram); nil when the bounds
    /// differ. A count that went down (the owner restarted) gives 0: nothing is known of that
    /// interval, and a reader falls back to the counts since start.
    public func since(_ earlier: LatencyBuckets) -> LatencyBuckets? {
        guard earlier.bounds == bounds else { return nil }
        var delta = LatencyBuckets(bounds: bounds)
        delta.counts = zip(counts, earlier.counts).map { max(0, $0 - $1) }
        delta.sum = max(0, sum - earlier.sum)
        return delta
    }

    /// The `q` quantile by linear interpolation inside the bucket holding it, as Prometheus'
    /// `histogram_quantile` does; the bucket above the last bound reports the last bound. Nil
    /// when nothing was observed.
    public func quantile(_ q: Double) -> Double? {
        let total = Double(count)
        guard total > 0 else { return nil }
        let rank = q * total
        var seen = 0.0
        for (i, c) in counts.enumerated() where c > 0 {
            let n = Double(c)
            if seen + n >= rank {
                guard i < bounds.count else { return bounds.last }
                let lower = i == 0 ? 0 : bounds[i - 1]
                return lower + (bounds[i] - lower) * ((rank - seen) / n)
            }
            seen += n
        }
        return bounds.last
    }
}
