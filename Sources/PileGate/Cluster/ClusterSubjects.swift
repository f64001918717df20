/// The NATS subjects, streams and buckets of one cluster, all under its `clusterName`, so
/// several clusters (staging and production, two regions) can share one NATS deployment.
///
/// Subject tokens may not hold `.`, `*`, `>` or white space; node ids and cluster names are
/// checked against that when cluster mode starts (`ClusterSubjects.isToken`).
public struct ClusterSubjects: Sendable, Equatable {
    public let cluster: String

    public init(cluster: String) {
        self.cluster = cluster
    }

    /// Every node's periodic announcement (`ClusterHeartbeat`): `<cluster>.node.<node>.alive`.
    public func heartbeat(node: String) -> String { "\(cluster).node.\(node).alive" }
    /// Subscribed by every node to learn the others.
    public var allHeartbeats: String { "\(cluster).node.*.alive" }
    /// A node's backend instances (`ClusterBackendAdvert`): `<cluster>.node.<node>.backends`.
    public func backends(node: String) -> String { "\(cluster).node.\(node).backends" }
    /// Subscribed by every node to learn the others' backend instances.
    public var allBackends: String { "\(cluster).node.*.backends" }
    /// A node's request subject for work another node hands it: `<cluster>.node.<node>.<verb>`.
    public func node(_ node: String, _ verb: String) -> String { "\(cluster).node.\(node).\(verb)" }
    /// Where a node publishes its pile directory writes (`ClusterDirectoryChanges`).
    public func directoryChanges(node: String) -> String { "\(cluster).node.\(node).directory" }
    public var allDirectoryChanges: String { "\(cluster).node.*.directory" }
    /// A must-deliver event in the cluster's event stream: `<cluster>.durable.<event>.<pile>`.
    public func durable(event: String, pile: String) -> String { "\(cluster).durable.\(event).\(pile)" }
    /// Every must-deliver event (the event stream's subjects).
    public var allDurable: String { "\(cluster).durable.>" }
    /// A name for a stream or bucket of this cluster (`[A-Za-z0-9_-]` only, as JetStream wants).
    public func resource(_ name: String) -> String { "\(cluster)_\(name)" }

    /// Whether `text` can be one subject token (and a stream or bucket name part).
    public static func isToken(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 64
            && text.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F
            }
    }
}
