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

    struct Pending: Sendable {
        var id: String
        /// The event's JSON text, as it goes into the WebSocket frame.
        var text: ByteBuffer
        var event: String
        var pile: UInt64
        var route: RouteKey
    }

    struct InFlight: Sendable {
        var pending: Pending
        var sentAt: NIODeadline
    }

    struct State {
        var ready: Deque<Pending> = []
        var waiting: Deque<Pending> = []
        var inFlight: [String: InFlight] = [:]
        var draining = false
        var closed = false
        /// Failure streak and ejections (pure state, see `BackendInstanceHealth`).
        var health = BackendInstanceHealth()
        /// Smoothed ack latency in seconds (nil until the first ack): what a slow ack is
        /// compared against on the other instances before it counts as a failure.
        var latencyEWMA: Double?
    }

    let state = NIOLockedValueBox(State())
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
        self.joinedAt = Date()
        self.routeSeed = BackendHub.stableHash(service + "/" + name)
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
        guard warmup > 0 else { return 1 }
        return min(1, max(0.02, now.timeIntervalSince(joinedAt) / warmup))
    }

    enum EnqueueResult { case sent, queued, overflow }

    /// Adds an event: ready to write when credit allows, else waiting (bounded).
    func enqueue(_ p: Pending, queueLimit: Int) -> EnqueueResult {
        let result = state.withLockedValue { s -> EnqueueResult in
            if s.inFlight.count + s.ready.count < maxInFlight {
                s.ready.append(p)
                return .sent
            }
            guard s.waiting.count < queueLimit else { return .overflow }
            s.waiting.append(p)
            return .queued
        }
        if case .sent = result { scheduleWrite() }
        return result
    }

    /// Takes what is ready to write, marking it in flight.
    func takeReady() -> [Pending] {
        state.withLockedValue { s in
            let out = Array(s.ready)
            s.ready.removeAll()
            let now = NIODeadline.now()
            for p in out { s.inFlight[p.id] = InFlight(pending: p, sentAt: now) }
            return out
        }
    }

    /// An ack arrived: frees credit and promotes waiting events. Returns the acked event, if it
    /// was in flight here.
    func ack(_ id: String) -> InFlight? {
        let (done, promoted) = state.withLockedValue { s -> (InFlight?, Bool) in
            guard let f = s.inFlight.removeValue(forKey: id) else { return (nil, false) }
            var promoted = false
            while s.inFlight.count + s.ready.count < maxInFlight, let next = s.waiting.popFirst() {
                s.ready.append(next)
                promoted = true
            }
            return (f, promoted)
        }
        if promoted { scheduleWrite() }
        return done
    }

    /// Everything not yet acked, removed (for re-routing after disconnect or ejection).
    func takeUnacked() -> [Pending] {
        state.withLockedValue { s in
            let out = s.inFlight.values.sorted { $0.sentAt < $1.sentAt }.map(\.pending) + Array(s.ready) + Array(s.waiting)
            s.inFlight.removeAll()
            s.ready.removeAll()
            s.waiting.removeAll()
            return out
        }
    }

    /// In-flight events older than `timeout`.
    func expired(timeout: TimeAmount, now: NIODeadline) -> [InFlight] {
        state.withLockedValue { s in s.inFlight.values.filter { now - $0.sentAt > timeout } }
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

    var inFlightCount: Int { state.withLockedValue { $0.inFlight.count } }

    /// What ops see about an instance.
    func status(now: Date, warmup: TimeInterval) -> InstanceStatus {
        let tick = NIODeadline.now()
        return state.withLockedValue { s in
            let ejected = s.health.isEjected(at: tick)
            let warming = warmup > 0 && now.timeIntervalSince(joinedAt) < warmup
            return InstanceStatus(
                service: service, instance: name, lane: lane, events: events.map { Array($0).sorted() } ?? ["*"],
                maxInFlight: maxInFlight, inFlight: s.inFlight.count, queued: s.waiting.count,
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
