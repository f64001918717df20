import Foundation

/// The hub's Prometheus series, from one reading of its state taken at scrape time (the hub
/// adds a collector to the gateway's metrics): per (lane, service) traffic and delivery
/// latency, events in flight, instances by state, undeliverable events and commands refused.
/// A value: the hub reads its locks once, this writes.
struct BackendHubMetrics {
    /// One instance as the metrics count it.
    struct Instance {
        var route: RouteKey
        var inFlight: Int
        /// "healthy", "warming", "ejected" or "draining".
        var state: String
    }

    static let states = ["healthy", "warming", "ejected", "draining"]

    var traffic: [RouteKey: BackendLaneTraffic]
    var instances: [Instance]
    var undeliverable: Int
    var commandsRefusedPerSocket: Int
    /// Pile requests waiting for a backend's reply now, and those refused by each bound.
    var pendingReplies: (count: Int, refused: [BackendPendingReplyLimit: Int])

    func write(to w: MetricsWriter) {
        for (k, t) in traffic {
            let labels = Self.labels(k)
            w.counter("pilegate_hub_events_routed_total", labels, t.routed)
            w.counter("pilegate_hub_fallbacks_total", labels, t.fallbacks)
            w.counter("pilegate_hub_acks_total", labels, t.acks)
            w.counter("pilegate_hub_delivery_failures_total", labels, t.failures)
            w.counter("pilegate_hub_ejections_total", labels, t.ejections)
            w.counter("pilegate_hub_queue_overflows_total", labels, t.overflows)
            w.histogram(
                "pilegate_hub_delivery_latency_seconds", labels, bounds: BackendLaneTraffic.bounds, buckets: t.latencyBuckets,
                sum: t.latencySumSeconds)
        }
        var inflight: [RouteKey: Int] = [:]
        var states: [String: Int] = [:]
        for i in instances {
            inflight[i.route, default: 0] += i.inFlight
            states[i.state, default: 0] += 1
        }
        for (k, n) in inflight {
            w.gauge("pilegate_hub_in_flight", Self.labels(k), Double(n))
        }
        for s in Self.states {
            w.gauge("pilegate_hub_instances", [("state", s)], Double(states[s] ?? 0))
        }
        w.counter("pilegate_hub_undeliverable_events_total", [], undeliverable)
        w.counter("pilegate_commands_refused_total", [("limit", "socket")], commandsRefusedPerSocket)
        w.gauge("pilegate_hub_pending_replies", [], Double(pendingReplies.count))
        for limit in BackendPendingReplyLimit.allCases {
            w.counter("pilegate_hub_pending_replies_refused_total", [("limit", limit.rawValue)], pendingReplies.refused[limit] ?? 0)
        }
    }

    /// The base lane is labelled "base", not "".
    private static func labels(_ k: RouteKey) -> [(String, String)] {
        [("lane", k.lane.isEmpty ? "base" : k.lane), ("service", k.service)]
    }
}
