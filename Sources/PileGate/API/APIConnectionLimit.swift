import HummingbirdCore

/// The API server's accept gate: at most `apiMaxConnections` API connections at once.
///
/// Without it anyone who reaches the API port could open connections until the process ran out
/// of file descriptors — the pile listener's `fileDescriptorReserve` would then be eaten by API
/// connections, and each one holds a task and buffers until `apiRequestTimeout` closes it. With
/// every place taken the server stops accepting (Hummingbird's `AvailableConnectionsDelegate`
/// stops reading the listening socket): new connections wait in the kernel's listen backlog and
/// are accepted, in order, as open ones close; beyond the backlog the kernel refuses them. A
/// silent or idle connection gives its place back after `apiRequestTimeout`.
///
/// A value that Hummingbird copies into its accept handler (one per listening socket); the
/// counts are shared through `APIConnectionCounts`, which `/metrics` reads.
struct APIConnectionLimit: AvailableConnectionsDelegate {
    let maxConnections: Int
    let counts: APIConnectionCounts
    /// This listener's own open connections (the handler calls these on its event loop).
    private var open = 0

    init(maxConnections: Int, counts: APIConnectionCounts) {
        self.maxConnections = maxConnections
        self.counts = counts
    }

    mutating func connectionOpened() {
        open += 1
        counts.open.wrappingIncrement(ordering: .relaxed)
        if open == maxConnections { counts.limitReached.wrappingIncrement(ordering: .relaxed) }
    }

    mutating func connectionClosed() {
        open -= 1
        counts.open.wrappingDecrement(ordering: .relaxed)
    }

    func isAcceptingNewConnections() -> Bool {
        open < maxConnections
    }
}
