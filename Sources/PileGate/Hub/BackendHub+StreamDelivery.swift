import NIOCore

/// The hub's seam for cluster mode's durable delivery (`ClusterStreamDelivery`): which services
/// have a durable instance on this node (each fetches from its service's consumer), and handing
/// an event read from the cluster's stream to one of them. The instance's ack comes back as for
/// any outbox event (`Outbox.acked` → the relay), which acks the stream message.
extension BackendHub {
    /// A service with durable instances here: the event types they take (nil: all), how many
    /// are healthy now (connected, not draining, not ejected), and their free credit (events they
    /// could take without queuing: what the node pulls from the stream at most, so an event does
    /// not wait in a queue here while its ack wait runs out).
    struct LocalDurableService: Sendable, Equatable {
        var events: Set<String>?
        var healthy: Int
        var room = 0

        func wants(_ event: String) -> Bool { events?.contains(event) ?? true }
    }

    /// The services with at least one durable instance on this node.
    func localDurableServices() -> [String: LocalDurableService] {
        let durable = durableInstances.withLockedValue { $0 }
        let now = NIODeadline.now()
        return instances.withLockedValue { all in
            var out: [String: LocalDurableService] = [:]
            for (service, list) in all {
                for i in list where i.node == nil && durable.contains(i.id) {
                    var entry = out[service] ?? LocalDurableService(events: [], healthy: 0)
                    if let e = i.events, entry.events != nil { entry.events?.formUnion(e) } else { entry.events = nil }
                    if i.isHealthy(at: now) {
                        entry.healthy += 1
                        entry.room += i.state.withLockedValue { s in
                            max(0, s.credit.maxInFlight - s.credit.inFlight.count - s.credit.ready.count - s.credit.waiting.count)
                        }
                    }
                    out[service] = entry
                }
            }
            return out
        }
    }

    /// Hands an event from the stream to one healthy instance of `service` here, routed by lane
    /// as any event; false when none can take it (the caller gives it back to the stream).
    func deliverFromStream(id: String, text: ByteBuffer, event: String, pile: UInt64, lane: String, service: String) -> Bool {
        // Only this node's own instances (not another node's, known through `ClusterEventRelay`).
        let pending = BackendInstance.Pending(id: id, text: text, event: event, pile: pile, route: RouteKey(lane: lane, service: service))
        return handOver(pending, service: service) != nil
    }
}
