import DequeModule
import Foundation
import Atomics
import NIOConcurrencyHelpers
import NIOCore

/// One subscribed backend socket: a (service, instance, lane, event types) subscription with
/// in-flight credit (`maxInFlight`), a bounded waiting queue, health (failures, ejection) and
/// drain state. Pile event loops enqueue; the socket's writer task drains.
///
/// In a cluster an instance may also stand for a socket on another node (`node` set): events go
/// there over NATS (`ClusterEventRelay`), and credit, health, warm-up and ejection are this node's
/// own view of it, kept exactly as for a local socket.
final class BackendInstance: Sendable {
    let id: UInt64
    let service: String
    let name: String
    let lane: String
    /// The node whose socket this is; nil = a socket of this node.
    let node: String?
    /// nil = every event type.
    let events: Set<String>?
    let maxInFlight: Int
    let joinedAt: Date
    /// This instance's key in rendezvous hashing, hashed once rather than per event.
    let routeSeed: UInt64

    struct Pending: Sendable, Identifiable {
        var id: String
        /// The event's JSON text, as it goes into the WebSocket frame.
        var text: ByteBuffer
        var event: String
        var pile: UInt64
        var route: RouteKey
        /// Set when the event was handed over from outside (another node, a durable consumer):
        /// its outcome goes there, and the hub does not re-route it (`BackendEventReceipt`).
        var receipt: BackendEventReceipt? = nil
    }

    typealias InFlight = BackendInstanceCredit<Pending>.InFlight

    struct State {
        /// In-flight credit and the waiting queue (pure state, see `BackendInstanceCredit`).
        var credit: BackendInstanceCredit<Pending>
        var draining = false
        var closed = false
        /// A remote instance its own node reports ejected: no new work from here either.
        var ejectedAtItsNode = false
        /// Failure streak and ejections (pure state, see `BackendInstanceHealth`).
        var health = BackendInstanceHealth()
        /// Smoothed ack latency in seconds (nil until the first ack): what a slow ack is
        /// compared against on the other instances before it counts as a failure.
        var latencyEWMA: Double?
    }

    let state: NIOLockedValueBox<State>
    /// Where events are written (the WebSocket, or NATS to the instance's node); nil until the
    /// subscription is confirmed and after the socket closes.
    private let output = NIOLockedValueBox<BackendInstanceOutput?>(nil)
    /// A write round is queued on the channel's event loop: enqueues in between add to it
    /// instead of queuing another, so a burst of events becomes one flush.
    private let writeScheduled = ManagedAtomic(false)

    /// - Parameters:
    ///   - node: the node holding the socket, for an instance of another node (nil = local).
    ///   - joinedAt: when it subscribed (a remote one's, as its node reports it, so every node
    ///     warms it up alike).
    init(
        id: UInt64, service: String, name: String, lane: String, events: Set<String>?, maxInFlight: Int, node: String? = nil,
        joinedAt: Date = Date()
    ) {
        self.id = id
        self.service = service
        self.name = name
        self.lane = lane
        self.node = node
        self.events = events
        self.maxInFlight = maxInFlight
        self.state = NIOLockedValueBox(State(credit: BackendInstanceCredit(maxInFlight: maxInFlight)))
        self.joinedAt = joinedAt
        self.routeSeed = BackendRouter.seed(service: service, name: name)
    }

    func wants(_ event: String) -> Bool { events?.contains(event) ?? true }

    /// Healthy = may take new work: connected, not draining, not ejected.
    func isHealthy(at now: NIODeadline) -> Bool {
        state.withLockedValue { s in
            !s.closed && !s.draining && !s.ejectedAtItsNode && !s.health.isEjected(at: now)
        }
    }

    /// The warm-up weight in (0, 1]: a new instance's share rises over the window.
    func weight(now: Date, warmup: TimeInterval) -> Double {
        BackendRouter.weight(joinedAt: joinedAt, now: now, warmup: warmup)
    }

    /// What the router needs to know of this instance.
    var routeCandidate: BackendRouter.Candidate {
        BackendRouter.Candidate(lane: lane, seed: routeSeed, joinedAt: joinedAt)
    }

    typealias EnqueueResult = BackendInstanceCredit<Pending>.EnqueueResult

    /// Adds an event: ready to write when credit allows, else waiting (bounded).
    func enqueue(_ p: Pending, queueLimit: Int) -> EnqueueResult {
        let result = state.withLockedValue { $0.credit.enqueue(p, queueLimit: queueLimit) }
        if case .sent = result { scheduleWrite() }
        return result
    }

    /// Takes what is ready to write, marking it in flight.
    func takeReady() -> [Pending] {
        let now = NIODeadline.now()
        return state.withLockedValue { $0.credit.takeReady(now: now) }
    }

    /// An ack arrived: frees credit and promotes waiting events. Returns the acked event, if it
    /// was in flight here.
    func ack(_ id: String) -> InFlight? {
        let (done, promoted) = state.withLockedValue { $0.credit.ack(id) }
        if promoted { scheduleWrite() }
        return done
    }

    /// Everything not yet acked, removed (for re-routing after disconnect or ejection).
    func takeUnacked() -> [Pending] {
        state.withLockedValue { $0.credit.takeAll() }
    }

    /// The waiting queue, removed (re-routed when the instance is ejected).
    func takeWaiting() -> [Pending] {
        state.withLockedValue { $0.credit.takeWaiting() }
    }

    /// In-flight events older than `timeout`, oldest first.
    func expired(timeout: TimeAmount, now: NIODeadline) -> [InFlight] {
        state.withLockedValue { $0.credit.expired(timeout: timeout, now: now) }
    }

    /// Folds an ack's latency into the smoothed figure.
    func observe(latency seconds: Double) {
        state.withLockedValue { s in
            s.latencyEWMA = s.latencyEWMA.map { $0 + 0.05 * (seconds - $0) } ?? seconds
        }
    }

    var latencyEWMA: Double? { state.withLockedValue { $0.latencyEWMA } }

    /// Records the outcome of an event sent at `sentAt`; returns the ejection period when this
    /// failure begins a new ejection episode (at most once per episode).
    func record(success: Bool, sentAt: NIODeadline, policy: BackendInstanceHealth.Policy) -> TimeAmount? {
        state.withLockedValue { s in
            if success {
                s.health.succeeded()
                return nil
            }
            return s.health.failed(sentAt: sentAt, now: .now(), policy: policy)
        }
    }

    func setDraining() { state.withLockedValue { $0.draining = true } }

    /// What a remote instance's node last reported of it: draining, ejected there.
    func setReported(draining: Bool, ejected: Bool) {
        state.withLockedValue { s in
            if draining { s.draining = true }
            s.ejectedAtItsNode = ejected
        }
    }

    var isClosed: Bool { state.withLockedValue { $0.closed } }

    func close() {
        state.withLockedValue { $0.closed = true }
        output.withLockedValue { $0 = nil }
    }

    /// Starts writing events to `channel` (the subscription's WebSocket), beginning with any
    /// that became ready before.
    func attach(_ channel: any Channel) {
        attach(.socket(channel))
    }

    /// Starts writing events to `output`, beginning with any that became ready before.
    func attach(_ output: BackendInstanceOutput) {
        self.output.withLockedValue { $0 = output }
        scheduleWrite()
    }

    /// Queues one write round on the output's event loop unless one is queued already. The
    /// round takes everything ready and hands it to the output (for a socket: each event as a
    /// WebSocket text frame, one flush).
    private func scheduleWrite() {
        guard let output = output.withLockedValue({ $0 }) else { return }
        guard writeScheduled.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return
        }
        output.eventLoop.execute { [self] in
            writeScheduled.store(false, ordering: .releasing)
            let batch = takeReady()
            guard !batch.isEmpty else { return }
            output.write(batch)
        }
    }

    var inFlightCount: Int { state.withLockedValue { $0.credit.inFlight.count } }

    /// What ops see about an instance.
    func status(now: Date, warmup: TimeInterval) -> InstanceStatus {
        let tick = NIODeadline.now()
        return state.withLockedValue { s in
            let ejected = s.health.isEjected(at: tick) || s.ejectedAtItsNode
            let warming = warmup > 0 && now.timeIntervalSince(joinedAt) < warmup
            return InstanceStatus(
                service: service, instance: name, lane: lane, events: events.map { Array($0).sorted() } ?? ["*"],
                maxInFlight: maxInFlight, inFlight: s.credit.inFlight.count, queued: s.credit.waiting.count,
                state: s.closed ? "closed" : s.draining ? "draining" : ejected ? "ejected" : warming ? "warming" : "healthy",
                ejections: s.health.ejections, joinedAt: joinedAt, weight: weight(now: now, warmup: warmup), node: node)
        }
    }
}

/// One instance as `/v1/stats` shows it.
public struct InstanceStatus: Codable, Sendable {
    public var service: String
    public var instance: String
    public var lane: String
    public var events: [String]
    public var maxInFlight: Int
    public var inFlight: Int
    public var queued: Int
    /// healthy, warming, ejected, draining or closed.
    public var state: String
    public var ejections: Int
    public var joinedAt: Date
    public var weight: Double
    /// In a cluster, the node holding an instance of another node (absent for this node's own).
    public var node: String?
}

/// A (session lane, service) pair: the unit of lane traffic accounting.
struct RouteKey: Hashable, Sendable {
    var lane: String
    var service: String
}
