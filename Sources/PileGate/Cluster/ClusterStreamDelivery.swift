import Foundation
import Logging
import NATS
import NIOConcurrencyHelpers
import NIOCore
import YKC

/// Delivers the cluster's event stream to the backends connected to this node: for each service
/// with a durable instance here, it pulls from that service's durable consumer (one per service
/// for the whole cluster; every node with an instance of the service pulls from it, and the
/// server gives each message to one of them), hands each event to a local instance through the
/// hub's lane routing, and acks the stream message when the instance acks the event.
///
/// - An event no instance here can take is given back at once (`nak` with a short delay), so
///   another node may take it; one handed out and not acked within `ackWait` is dropped from
///   the books here and the server delivers it again (possibly elsewhere). After `maxDeliver`
///   deliveries the server stops: a dead letter (`ClusterEventStream` counts the advisory).
/// - A service's instances here that do not take an event's type ack it at once (skipped), as
///   the standalone outbox keeps nothing for a service of a type it did not subscribe to.
/// - A node pulls at most what its instances of the service have credit for (`maxInFlight`
///   each), and at most `maxInFlightPerService`, so an event never waits in a queue here while
///   its ack wait runs out and the others can take what this node cannot.
/// - Per-pile order is not kept across nodes: several nodes pull from one consumer.
final class ClusterStreamDelivery: Sendable {
    struct Settings: Sendable {
        var ackWait: Duration
        var maxDeliver: Int
        var maxInFlightPerService = 1_000
        /// A pull with nothing available waits this long for the next event (a long poll).
        var longPoll: Duration = .seconds(1)
    }

    /// A stream message handed to a local instance, until its ack or `until`.
    struct Entry: Sendable {
        var message: JetStreamMessage
        var until: ContinuousClock.Instant
    }

    struct Counters: Sendable {
        var delivered = 0
        var acked = 0
        var redelivered = 0
        var skipped = 0
        var naks = 0
        var expired = 0
        var invalid = 0
    }

    let hub: BackendHub
    let subjects: ClusterSubjects
    let stream: String
    let settings: Settings
    let logger: Logger
    private let tracked = NIOLockedValueBox<[String: [String: Entry]]>([:])
    let counters = NIOLockedValueBox(Counters())
    private let clock = ContinuousClock()

    init(hub: BackendHub, subjects: ClusterSubjects, stream: String, settings: Settings, logger: Logger) {
        self.hub = hub
        self.subjects = subjects
        self.stream = stream
        self.settings = settings
        self.logger = logger
    }

    /// The durable consumer's name for `service`: the service name when it is a valid name
    /// (`[A-Za-z0-9_-]`), else its other characters ('.') replaced and a hash of the original
    /// appended, so "a.b" and "a_b" stay two consumers.
    static func consumerName(for service: String) -> String {
        if ClusterSubjects.isToken(service) { return service }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in service.utf8 { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 }
        let cleaned = String(service.map { ClusterSubjects.isToken(String($0)) ? $0 : "_" }.prefix(40))
        return cleaned + "-" + String(hash, radix: 36)
    }

    func consumerConfiguration(for service: String) -> ConsumerConfiguration {
        ConsumerConfiguration(
            durableName: Self.consumerName(for: service), description: "pilegate service \(service)", deliverPolicy: .all,
            ackPolicy: .explicit, ackWait: settings.ackWait, maxDeliver: settings.maxDeliver,
            filterSubject: subjects.allDurable, maxAckPending: 20_000)
    }

    /// Runs one pull loop per service with a durable instance here, started as services appear
    /// and stopped when their last instance goes; returns when cancelled.
    func run(client: NATSClient) async {
        let loops = NIOLockedValueBox<[String: Task<Void, Never>]>([:])
        await withTaskCancellationHandler {
            var lastSweep = clock.now
            while !Task.isCancelled {
                let services = hub.localDurableServices()
                loops.withLockedValue { running in
                    for service in services.keys where running[service] == nil {
                        running[service] = Task { await self.pull(service: service, client: client) }
                    }
                    for (service, task) in running where services[service] == nil {
                        task.cancel()
                        running[service] = nil
                    }
                }
                if clock.now - lastSweep > .seconds(1) {
                    sweep()
                    lastSweep = clock.now
                }
                try? await Task.sleep(for: .milliseconds(100))
            }
            for task in loops.withLockedValue({ $0.values }) { await task.value }
        } onCancel: {
            for task in loops.withLockedValue({ $0.values }) { task.cancel() }
        }
    }

    /// Pulls `service`'s consumer while the service has a healthy instance here and room.
    private func pull(service: String, client: NATSClient) async {
        let js = client.jetStream()
        let consumer = js.pullConsumer(stream: stream, name: Self.consumerName(for: service))
        var consumerReady = false
        var lastProblem = ""
        while !Task.isCancelled {
            guard let view = hub.localDurableServices()[service], view.healthy > 0, client.status == .connected else {
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            let room = min(view.room, settings.maxInFlightPerService - inFlight(service))
            guard room > 0 else {
                try? await Task.sleep(for: .milliseconds(10))
                continue
            }
            do {
                if !consumerReady {
                    try await ensureConsumer(service, js: js)
                    consumerReady = true
                }
                var batch = try await consumer.fetch(batch: min(room, 256), noWait: true)
                if batch.isEmpty { batch = try await consumer.fetch(batch: 1, expires: settings.longPoll) }
                for message in batch { handle(message, service: service, view: view) }
                lastProblem = ""
            } catch {
                let problem = "\(error)"
                if problem != lastProblem {
                    logger.warning("cluster: cannot pull events", metadata: ["service": "\(service)", "error": "\(problem)"])
                    lastProblem = problem
                }
                // The consumer may be gone (stream re-created after a store loss): create it again.
                consumerReady = false
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
        // No instance of the service here any more: give back what it had, for another node.
        let left = tracked.withLockedValue { $0.removeValue(forKey: service) } ?? [:]
        for entry in left.values { try? entry.message.nak() }
    }

    /// Creates the service's durable consumer, or keeps the existing one (another node created
    /// it, or an earlier run with other settings: those stay until an operator deletes it).
    private func ensureConsumer(_ service: String, js: JetStream) async throws {
        do {
            try await js.createConsumer(stream: stream, consumerConfiguration(for: service))
        } catch NATSError.jetStream(let e) where e.errorCode != JetStreamAPIError.streamNotFound {
            _ = try await js.consumerInfo(stream: stream, name: Self.consumerName(for: service))
            logger.notice(
                "cluster: keeping the existing consumer, whose settings differ", metadata: ["service": "\(service)", "error": "\(e)"])
        }
    }

    private func inFlight(_ service: String) -> Int { tracked.withLockedValue { $0[service]?.count ?? 0 } }

    /// One message from `service`'s consumer: handed to a local instance, skipped, or given back.
    private func handle(_ message: JetStreamMessage, service: String, view: BackendHub.LocalDurableService) {
        // `<cluster>.durable.<event>.<pile>`: the last two tokens.
        let subject = message.subject
        let last = subject.lastIndex(of: ".")
        let previous = last.flatMap { subject[..<$0].lastIndex(of: ".") }
        guard let last, let previous, subject[..<previous].contains("."), previous < subject.index(before: last),
            let pile = PileID(String(subject[subject.index(after: last)...])), let id = message.headers?[Self.idHeader]
        else {
            counters.withLockedValue { $0.invalid += 1 }
            try? message.term()
            return
        }
        let event = String(subject[subject.index(after: previous)..<last])
        guard view.wants(event) else {
            counters.withLockedValue { $0.skipped += 1 }
            try? message.ack()
            return
        }
        let lane = message.headers?[Self.laneHeader] ?? ""
        // Booked before the hand-out: the instance's ack can come back before `route` returns.
        tracked.withLockedValue { $0[service, default: [:]][id] = Entry(message: message, until: clock.now + settings.ackWait) }
        if hub.deliverFromStream(id: id, text: message.payload, event: event, pile: pile.raw, lane: lane, service: service) {
            counters.withLockedValue {
                $0.delivered += 1
                if message.metadata.deliveryCount > 1 { $0.redelivered += 1 }
            }
        } else {
            tracked.withLockedValue { _ = $0[service]?.removeValue(forKey: id) }
            counters.withLockedValue { $0.naks += 1 }
            try? message.nak(delay: .seconds(1))
        }
    }

    /// A local instance of `service` acked event `id`: the stream message is acked.
    func acked(id: String, service: String) {
        guard let entry = tracked.withLockedValue({ $0[service]?.removeValue(forKey: id) }) else { return }
        counters.withLockedValue { $0.acked += 1 }
        try? entry.message.ack()
    }

    /// Forgets hand-outs past their ack wait: the server delivers them again.
    private func sweep() {
        let now = clock.now
        let expired = tracked.withLockedValue { all -> Int in
            var n = 0
            for (service, entries) in all {
                let late = entries.filter { $0.value.until <= now }
                for id in late.keys { all[service]?[id] = nil }
                n += late.count
            }
            return n
        }
        if expired > 0 { counters.withLockedValue { $0.expired += expired } }
    }

    /// Events handed to local instances and not acked yet, per service.
    func inFlightCounts() -> [String: Int] { tracked.withLockedValue { $0.mapValues(\.count) } }

    /// Headers of a stream event: its event id (the hub's ack key) and the session's lane.
    static let idHeader = "Pilegate-Event-Id"
    static let laneHeader = "Pilegate-Lane"
}
