import Foundation

/// Where lane rules are agreed when more than one node decides lanes (cluster mode: a JetStream
/// KV bucket, `ClusterLaneRules`). `LaneRuleBook.replace` commits through it before it stores
/// and applies a list, so every node ends up with the same list and the same version, and two
/// concurrent edits cannot silently lose one.
public protocol LaneRuleSharing: Sendable {
    /// Stores `rules` (the JSON text of the list) as the next version and returns that version.
    /// With `ifVersion`, only on top of that version, else `LaneRuleVersionConflict`; throws
    /// `LaneRuleSharingUnavailable` when the shared store cannot be reached.
    func commit(rules: String, updatedAt: Date, ifVersion: Int?) async throws -> Int
}

/// The shared store of the lane rules cannot be reached (cluster mode with NATS down): a change
/// now would apply on this node only, so it is refused and nothing changes.
public struct LaneRuleSharingUnavailable: Error, Sendable, CustomStringConvertible {
    public var reason: String

    public init(reason: String) {
        self.reason = reason
    }

    public var description: String {
        "lane rules are shared by the cluster and the shared store cannot be reached (\(reason)); nothing changed, try again"
    }
}
