import Foundation

/// What a node announces every `clusterHeartbeatInterval` on `<cluster>.node.<node>.alive`, and
/// once more with `leaving` set when it shuts down, so the others stop counting on it at once
/// instead of after `clusterNodeTimeout`.
public struct ClusterHeartbeat: Codable, Sendable, Equatable {
    public var node: String
    /// Piles online on the node.
    public var piles: Int
    /// The node's API address (`host:port`), for operators and redirects.
    public var api: String?
    /// When the node started (Unix seconds): a restarted node with the same id is a new member.
    public var startedAt: Double
    public var leaving: Bool
    /// The node publishes its pile directory writes in batches (`ClusterDirectoryChanges`); absent
    /// from nodes of earlier versions, which only write the bucket.
    public var directoryChanges: Bool?

    public init(node: String, piles: Int, api: String?, startedAt: Double, leaving: Bool = false, directoryChanges: Bool? = nil) {
        self.node = node
        self.piles = piles
        self.api = api
        self.startedAt = startedAt
        self.leaving = leaving
        self.directoryChanges = directoryChanges
    }
}
