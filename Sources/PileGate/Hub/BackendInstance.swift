import DequeModule
import Foundation
import Atomics
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// One subscribed backend socket: a (service, instance, lane, event types) subscription with
/// in-flight credit (`maxInFlight`), a bounded waiting queue, health (failures, ejection) and
/// drain state. Pile event loops enqueue; the socket's writer task drains.
final class BackendInstance: Sendable {
    let id: UInt64
    let service: String
    let name: String
    let lane: String
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
    }

    typealias InFlight = BackendInstanceCredit<Pending>.InFlight

    struct State {
        /// In-flight credit and the waiting queue (pure state, see `BackendInstanceCredit`).
        var credit: BackendInstanceCredit<Pending>
        var draining = false
        var closed = false
        /// Failure streak and ejections (pure state, see `BackendInstanceHealth`).
        var health = BackendInstanceHealth()
        /// Smoothed ack latency in seconds (nil until the first ack): what a slow ack is
        /// compared against on the other instances before it counts as a failure.
        var latencyEWMA: Double?
    }

    let state: NIOLockedValueBox<State>
    /// The WebSocket channel events are written to; nil until the subscription is confirmed and
    /// after the socket closes.
    private let output = NIOLockedValueBox<(any Channel)?>(nil)
    /// A write round is queued on the channel's event loop: enqueues in between add to it
    /// instead of queuing another, so a burst of events becomes one flush.
    private let writeScheduled = ManagedAtomic(false)

    init(id: UInt64, service: String, name: String, lane: String, events: Set<String>?, maxInFlight: Int) {
        self.id = id
        self.service = service
        self.name = name
        self.lane = lane
        self.events = events
        self.maxInFlight = maxInFlight
        self.state = NIOLockedValueBox(State(credit: BackendInstanceCredit(maxInFlight: maxInFlight)))
        self.joinedAt = Date()
        self.routeSeed = BackendRouter.seed(service: service, name: name)
    }

    func wants(_ event: String) -> Bool { events?.contains(event) ?? true }

    /// Healthy = may take new work: connected, not draining, not ejected.
    func isHealthy(at now: NIODeadline) -> Bool {
        state.withLockedValue { s in
            !s.closed && !s.draining && !s.health.isEjected(at: now)
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

    func close() {
        state.withLockedValue { $0.closed = true }
        output.withLockedValue { $0 = nil }
    }

    /// Starts writing events to `channel` (the subscription's WebSocket), beginning with any
    /// that became ready before.
    func attach(_ channel: any Channel) {
        output.withLockedValue { $0 = channel }
        scheduleWrite()
    }

    /// Queues one write round on the socket's event loop unless one is queued already. The
    /// round takes everything ready, writes each as a WebSocket text frame and flushes once.
    private func scheduleWrite() {
        guard let channel = output.withLockedValue({ $0 }) else { return }
        guard writeScheduled.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return
        }
        channel.eventLoop.execute { [self] in
            writeScheduled.store(false, ordering: .releasing)
            let batch = takeReady()
            guard !batch.isEmpty else { return }
            for p in batch {
                channel.write(WebSocketFrame(fin: true, opcode: .text, data: p.text), promise: nil)
            }
            channel.flush()
        }
    }

    var inFlightCount: Int { state.withLockedValue { $0.credit.inFlight.count } }

    /// What ops see about an instance.
    func status(now: Date, warmup: TimeInterval) -> InstanceStatus {
        let tick = NIODeadline.now()
        return state.withLockedValue { s in
            let ejected = s.health.isEjected(at: tick)
            let warming = warmup > 0 && now.timeIntervalSince(joinedAt) < warmup
            return InstanceStatus(
                service: service, instance: name, lane: lane, events: events.map { Array($0).sorted() } ?? ["*"],
                maxInFlight: maxInFlight, inFlight: s.credit.inFlight.count, queued: s.credit.waiting.count,
                state: s.closed ? "closed" : s.draining ? "draining" : ejected ? "ejected" : warming ? "warming" : "healthy",
                ejections: s.health.ejections, joinedAt: joinedAt, weight: weight(now: now, warmup: warmup))
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
}

/// A (session lane, service) pair: the unit of lane traffic accounting.
struct RouteKey: Hashable, Sendable {
    var lane: String
    var service: String
}
