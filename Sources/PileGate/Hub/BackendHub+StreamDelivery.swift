import NIOCore

/// The hub's seam for cluster mode's durable delivery (`ClusterStreamDelivery`): which services
/// have a durable instance on this node (each fetches from its service's consumer), and handing
/// an event read from the cluster's stream to one of them. The instance's ack comes back as for
/// any outbox event (`Outbox.acked` → the relay), which acks the stream message.
extension BackendHub {
    /// A service with durable instances here: the event types they take (nil: all) and how many
    /// are healthy now (connected, not draining, not ejected).
    struct LocalDurableService: Sendable, Equatable {
        var events: Set<String>?
        var healthy: Int

        func wants(_ event: String) -> Bool { events?.contains(event) ?? true }
    }

    /// The services with at least one durable instance on this node.
    func localDurableServices() -> [String: LocalDurableService] {
        let durable = durableInstances.withLockedValue { $0 }
        let now = NIODeadline.now()
        return instances.withLockedValue { all in
            var out: [String: LocalDurableService] = [:]
            for (service, list) in all {
                for i in list where durable.contains(i.id) {
                    var entry = out[service] ?? LocalDurableService(events: [], healthy: 0)
                    if let e = i.events, entry.events != nil { entry.events?.formUnion(e) } else { entry.events = nil }
                    if i.isHealthy(at: now) { entry.healthy += 1 }
                    out[service] = entry
                }
            }
            return out
        }
    }

    /// Hands an event from the stream to one healthy instance of `service` here, routed by lane
    /// as any event; false when none can take it (the caller gives it back to the stream).
    func deliverFromStream(id: String, text: ByteBuffer, event: String, pile: UInt64, lane: String, service: String) -> Bool {
        let pending = BackendInstance.Pending(id: id, text: text, event: event, pile: pile, route: RouteKey(lane: lane, service: ""))
        return route(pending, onlyService: service, countUndeliverable: false) > 0
    }
}
