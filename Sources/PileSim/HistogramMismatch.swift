/// Two latency histograms with different bucket bounds cannot be added up.
public struct HistogramMismatch: Error, Sendable, CustomStringConvertible {
    public var ours: Int
    public var theirs: Int

    public var description: String { "latency histograms with different buckets (\(ours) vs \(theirs) bounds) cannot be merged" }
}
