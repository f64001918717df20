/// The backend instances of the other nodes, as their advertisements last said: pure state,
/// driven by `apply` (an advertisement arrived) and `drop` (a node left or died, or this node
/// lost NATS), each returning what changed so the relay adds, updates and removes the matching
/// instances in the hub exactly once. Tested without NATS.
struct ClusterBackendDirectory: Sendable {
    struct Changes: Sendable, Equatable {
        var added: [ClusterBackendAdvert.Instance] = []
        /// Same socket, new state (draining, ejected or back).
        var updated: [ClusterBackendAdvert.Instance] = []
        /// Keys of instances gone.
        var removed: [String] = []

        var isEmpty: Bool { added.isEmpty && updated.isEmpty && removed.isEmpty }
    }

    /// node → key → instance.
    private(set) var nodes: [String: [String: ClusterBackendAdvert.Instance]] = [:]

    init() {}

    /// Number of remote instances known.
    var count: Int { nodes.values.reduce(0) { $0 + $1.count } }

    /// Takes `advert` as the whole truth about its node. Invalid entries are left out (and so,
    /// if they were known, removed).
    mutating func apply(_ advert: ClusterBackendAdvert) -> Changes {
        var changes = Changes()
        let old = nodes[advert.node] ?? [:]
        var new: [String: ClusterBackendAdvert.Instance] = [:]
        for i in advert.instances where i.isValid && new[i.key] == nil {
            new[i.key] = i
            if let was = old[i.key] {
                if was.service != i.service || was.instance != i.instance || was.lane != i.lane || was.events != i.events
                    || was.maxInFlight != i.maxInFlight || was.durable != i.durable
                {
                    // Not the same subscription under one key: replace it.
                    changes.removed.append(i.key)
                    changes.added.append(i)
                } else if was.state != i.state {
                    changes.updated.append(i)
                }
            } else {
                changes.added.append(i)
            }
        }
        for key in old.keys where new[key] == nil { changes.removed.append(key) }
        changes.removed.sort()
        nodes[advert.node] = new.isEmpty ? nil : new
        return changes
    }

    /// Forgets `node` (left, died); returns the keys of its instances.
    mutating func drop(node: String) -> [String] {
        (nodes.removeValue(forKey: node) ?? [:]).keys.sorted()
    }

    /// Forgets every node (this node lost NATS); returns every key.
    mutating func dropAll() -> [String] {
        let keys = nodes.values.flatMap { $0.keys }.sorted()
        nodes = [:]
        return keys
    }
}
