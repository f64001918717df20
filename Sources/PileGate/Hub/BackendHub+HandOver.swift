import Foundation
import NIOCore
import YKC

/// The hub's seam for events that did not start on this node's piles (docs/CLUSTER.md): another
/// node routed an event of its pile to one of this node's instances (`ClusterEventRelay`), or a
/// durable consumer pulled an already-encoded event from a stream. Either way the event's bytes
/// go to the socket as they are (no re-encoding), it takes the instance's credit and counts in
/// its health, and its outcome goes to the `BackendEventReceipt` it carries.
extension BackendHub {
    /// What became of a backend's `reply`.
    enum ReplyOutcome: Sendable, Equatable {
        case accepted
        /// Nothing waits for that event id (late, duplicate, not a request).
        case unknown
        /// The data does not make a valid reply frame; the request stays pending.
        case invalid(String)
    }

    /// Hands `p` (with its receipt) to this node's instance `instance`, chosen elsewhere. Returns
    /// why it could not take it, or nil once it is queued or on its way to the socket.
    func handOver(_ p: BackendInstance.Pending, to instance: BackendInstance) -> BackendEventReceipt.Failure? {
        guard instance.node == nil, !instance.isClosed else { return .instanceGone }
        return instance.enqueue(p, queueLimit: config.queueLimit) == .overflow ? .queueFull : nil
    }

    /// Hands `p` to one of this node's own instances of `service`, chosen by the one router as
    /// any event is (same lane `p.route.lane`, else base; the pile's rendezvous choice), for a
    /// consumer that delivers a service's events from a stream. Returns the instance, or nil when
    /// none can take it now (then the receipt is not called).
    func handOver(_ p: BackendInstance.Pending, service: String) -> BackendInstance? {
        let now = Date()
        let tick = NIODeadline.now()
        let choice = instances.withLockedValue { all in
            router.choose(pile: p.pile, lane: p.route.lane, among: all[service] ?? [], now: now) { c in
                guard c.node == nil, c.wants(p.event), c.isHealthy(at: tick) else { return nil }
                return c.routeCandidate
            }
        }
        guard let instance = choice?.instance else { return nil }
        var item = p
        item.route = RouteKey(lane: p.route.lane, service: service)
        return handOver(item, to: instance) == nil ? instance : nil
    }

    /// This node's own instance with hub id `id`, if it is still subscribed.
    func localInstance(id: UInt64) -> BackendInstance? {
        instances.withLockedValue { all in
            for list in all.values {
                if let i = list.first(where: { $0.id == id }) { return i.node == nil ? i : nil }
            }
            return nil
        }
    }

    /// This node's own instances (for the cluster's advertisement).
    var localInstances: [BackendInstance] {
        instances.withLockedValue { $0.values.flatMap { $0.filter { $0.node == nil } } }
    }

    /// A backend's `reply` to event `id`: answered here when this node waits for it, else (in
    /// a cluster) by the node that sent the event.
    func answer(_ id: String, data: JSONValue) async -> ReplyOutcome {
        do {
            if try replied(id, data: data) { return .accepted }
        } catch {
            return .invalid(error.description)
        }
        guard let forward = replyForwarder.withLockedValue({ $0 })?.call else { return .unknown }
        return await forward(id, data) ?? .unknown
    }

    /// A remote instance's node gave event `id` up (its socket left, its queue was full): the
    /// event goes to another instance of the service now, as after a local disconnect. Not a
    /// failure of the instance: its node has told us, and it will say so in its advertisement.
    func remoteGaveUp(_ id: String, by instance: BackendInstance) {
        guard let f = instance.ack(id) else { return }
        reroute([f.item], from: instance, because: .instanceGone)
    }
}
