/// The cluster's shared state cannot be reached now (NATS down or refusing): a change that
/// needs it is refused rather than applied to one node only.
public struct ClusterUnavailable: Error, Sendable, CustomStringConvertible {
    public var reason: String

    public init(reason: String) {
        self.reason = reason
    }

    public var description: String { "the cluster cannot be reached (\(reason))" }
}
