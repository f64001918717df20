import Atomics

/// Open API connections and how often their bound (`apiMaxConnections`) was reached, shared by
/// the API server's accept gate (`APIConnectionLimit`) and `/metrics`. Lives in the gateway, so
/// the counts outlast a restart of the API server within the process.
final class APIConnectionCounts: Sendable {
    /// Connections accepted and not yet closed (plain HTTP, TLS, WebSocket alike).
    let open = ManagedAtomic(0)
    /// Times an accepted connection filled the last place: accepting paused until one closed.
    let limitReached = ManagedAtomic(0)

    init() {}

    func collectMetrics(_ w: MetricsWriter) {
        w.gauge("pilegate_api_connections", [], Double(open.load(ordering: .relaxed)))
        w.counter("pilegate_api_connections_limit_reached_total", [], limitReached.load(ordering: .relaxed))
    }
}
