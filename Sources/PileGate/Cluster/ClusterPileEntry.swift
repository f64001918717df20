import Foundation

/// Where a pile is online in the cluster: the value of its key (the pile id) in the
/// `<cluster>_piles` bucket (`ClusterPileDirectory`). Written by the node that accepted the
/// login, removed by it when the session ends (only while it still owns the key) or by the
/// cluster's cleaner when the node dies.
public struct ClusterPileEntry: Codable, Sendable, Equatable {
    /// The node holding the session.
    public var node: String
    /// That node's `startedAt`: an entry of an earlier incarnation of a restarted node is stale.
    public var incarnation: Double
    /// When the pile logged in (Unix seconds).
    public var since: Double
    /// The pile's `host:port` as the node sees it.
    public var address: String
    public var lane: String
    /// The connection id on that node (`PileSessionInfo.connectionId`).
    public var connection: UInt64

    public init(node: String, incarnation: Double, since: Double, address: String, lane: String, connection: UInt64) {
        self.node = node
        self.incarnation = incarnation
        self.since = since
        self.address = address
        self.lane = lane
        self.connection = connection
    }
}
