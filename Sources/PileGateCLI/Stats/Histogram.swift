import PileGate

/// Quantiles from the hub's delivery-latency buckets (`BackendLaneTraffic.bounds`, plus +Inf).
enum Histogram {
    /// Linear interpolation inside the bucket holding the quantile, as Prometheus'
    /// `histogram_quantile` does; the +Inf bucket reports the last finite bound.
    static func quantile(_ q: Double, buckets: [Double], bounds: [Double] = BackendLaneTraffic.bounds) -> Double? {
        let total = buckets.reduce(0, +)
        guard total > 0 else { return nil }
        let rank = q * total
        var seen = 0.0
        for (i, n) in buckets.enumerated() {
            if seen + n >= rank && n > 0 {
                guard i < bounds.count else { return bounds.last }
                let lower = i == 0 ? 0 : bounds[i - 1]
                return lower + (bounds[i] - lower) * ((rank - seen) / n)
            }
            seen += n
        }
        return bounds.last
    }
}
