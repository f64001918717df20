/// What a node tells the cluster about its backend instances, on `<cluster>.node.<node>.backends`
/// whenever they change and every `clusterHeartbeatInterval` (docs/CLUSTER.md, "Backends see one
/// gateway"). Always the full list, so a node that just joined, or that just got its NATS
/// connection back, learns everything from one message; an instance missing from it is gone.
struct ClusterBackendAdvert: Codable, Sendable, Equatable {
    struct Instance: Codable, Sendable, Equatable {
        /// Names the socket across the cluster (`<node>-<relay tag>-<hub id>`): events for it
        /// carry it, so a restarted node never takes an event meant for its previous life.
        var key: String
        var service: String
        var instance: String
        var lane: String
        /// nil = every event type.
        var events: [String]?
        var maxInFlight: Int
        var durable: Bool
        /// As the node's own hub sees it: `healthy`, `warming`, `draining` or `ejected`.
        var state: String
        /// Seconds since it subscribed (not a timestamp: the nodes' clocks need not agree).
        var joinedSecondsAgo: Double

        /// Whether the fields can be trusted to build an instance from (a bad one is skipped).
        var isValid: Bool {
            !key.isEmpty && key.utf8.count <= 200 && !key.utf8.contains(where: { $0 < 0x21 || $0 > 0x7E })
                && !service.isEmpty && service.utf8.count <= 128 && !instance.isEmpty && instance.utf8.count <= 128
                && lane.utf8.count <= 64 && (1...100_000).contains(maxInFlight) && (events?.count ?? 0) <= 256
                && joinedSecondsAgo.isFinite && joinedSecondsAgo >= 0
        }
    }

    var node: String
    var instances: [Instance]
    /// The node reads relayed events in batches and answers them with batched outcomes
    /// (`ClusterRelayBatch`); nil from a node of an earlier version, which gets one message per event.
    var batches: Bool? = nil
}
