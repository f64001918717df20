/// The nodes of the cluster as this node sees them, from their heartbeats: pure state, driven by
/// `record` (a heartbeat arrived) and `expire` (time passed), so it is tested without NATS.
///
/// A node is a member from its first heartbeat until it says it is leaving or stays silent for
/// the timeout; each transition is reported once, so whoever cleans up after a dead node (its
/// piles shown offline, its work taken over) does it once.
public struct ClusterMembership: Sendable {
    public struct Member: Sendable, Equatable {
        public var heartbeat: ClusterHeartbeat
        /// Monotonic seconds of the last heartbeat.
        public var lastSeen: Double
    }

    /// A change in membership.
    public enum Change: Sendable, Equatable {
        case joined(String)
        /// Said it was leaving (a drained shutdown).
        case left(String)
        /// Silent for the timeout: killed, partitioned or stuck.
        case died(String)
        /// Came back with a new `startedAt`: the old incarnation's state is gone.
        case restarted(String)
    }

    public private(set) var members: [String: Member] = [:]
    public let timeout: Double

    public init(timeout: Double) {
        self.timeout = timeout
    }

    /// A heartbeat arrived at monotonic time `now`.
    public mutating func record(_ heartbeat: ClusterHeartbeat, at now: Double) -> Change? {
        let node = heartbeat.node
        if heartbeat.leaving {
            return members.removeValue(forKey: node) != nil ? .left(node) : nil
        }
        let previous = members[node]
        members[node] = Member(heartbeat: heartbeat, lastSeen: now)
        guard let previous else { return .joined(node) }
        return previous.heartbeat.startedAt != heartbeat.startedAt ? .restarted(node) : nil
    }

    /// Removes the members silent since `now - timeout`; returns them as `.died`.
    public mutating func expire(at now: Double) -> [Change] {
        let dead = members.filter { now - $0.value.lastSeen > timeout }.keys.sorted()
        for node in dead { members.removeValue(forKey: node) }
        return dead.map { .died($0) }
    }

    /// Whether `node` is a live member.
    public func isAlive(_ node: String) -> Bool { members[node] != nil }
}
