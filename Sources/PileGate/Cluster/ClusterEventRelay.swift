import Atomics
import Foundation
import Logging
import NATS
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import YKC

/// Backends see one gateway (issue 11, item 1; docs/CLUSTER.md): a backend connected to any node
/// gets the events of piles on every node, with the lane semantics of one node, each event once
/// per service.
///
/// The one router stays where the pile is. Every node advertises its own backend instances
/// (`ClusterBackendAdvert`, on change and every heartbeat interval) and registers the other nodes'
/// as remote `BackendInstance`s in its hub: candidates of the same router beside the local ones,
/// with their own credit, health, warm-up and ejection kept here. An event routed to a remote
/// instance is published, as the bytes already encoded for a socket, to the holding node's
/// `deliver` subject with the instance's key; that node hands it to the socket as it is
/// (`BackendHub.handOver`) and sends the backend's ack — or why it gave the event up — to the
/// origin's `acks` subject, where the usual ack, credit, outbox and re-routing logic runs. A reply
/// to a `replyExpected` event is forwarded to the origin's `replies` subject (request-reply), so it
/// reaches the node whose pile waits. One node sends all of a pile's events, in order, over one
/// NATS connection, and one write round at a time per instance: per-pile order holds.
///
/// Failure: a node that leaves or dies, or this node's NATS connection dropping, removes the
/// remote instances concerned, and what they had in flight is re-routed as after a local
/// disconnect; while NATS is away only local instances are candidates.
final class ClusterEventRelay: ClusterComponent, Sendable {
    let name = "backend event relay"
    /// Header names on the relay's messages.
    enum Header {
        /// The instance key (`ClusterBackendAdvert.Instance.key`).
        static let instance = "Pilegate-Instance"
        static let event = "Pilegate-Event"
        /// On an ack message: `acked`, or the `BackendEventReceipt.Failure` raw value.
        static let outcome = "Pilegate-Outcome"
        /// The message carries several events (`ClusterRelayBatch`).
        static let batch = "Pilegate-Batch"
        /// The message carries several outcomes (`ClusterRelayBatch`).
        static let outcomes = "Pilegate-Outcomes"
    }

    private let hub: BackendHub
    private let logger: Logger
    /// Random per process: with the node id it prefixes this node's instance keys.
    private let tag = String(UInt64.random(in: 0...UInt64.max), radix: 36)

    private struct State {
        var directory = ClusterBackendDirectory()
        /// Remote instances registered in the hub, by key.
        var remote: [String: BackendInstance] = [:]
        /// This node's instances by hub id, as last advertised (events arrive only for those).
        var local: [UInt64: BackendInstance] = [:]
        /// One receipt per origin node's ack subject, reused for all its events.
        var receipts: [String: BackendEventReceipt] = [:]
        /// False while NATS is away: advertisements are not taken then.
        var linked = true
    }
    private let state = NIOLockedValueBox(State())
    /// Outcomes waiting to go to their origin node's ack subject, one message per origin per
    /// event-loop turn (`ClusterRelayBatch`); `scheduled`: a flush is on its way.
    private let outcomeBatches = NIOLockedValueBox<(pending: [String: ByteBuffer], scheduled: Bool)>(([:], false))
    /// Events sent to remote instances, events taken for local ones, events given back to
    /// their origin, publishes that failed, replies forwarded (`/v1/stats`).
    private let relayedOut = ManagedAtomic(0)
    private let relayedIn = ManagedAtomic(0)
    private let givenBack = ManagedAtomic(0)
    private let publishFailures = ManagedAtomic(0)
    private let repliesForwarded = ManagedAtomic(0)

    init(hub: BackendHub, logger: Logger) {
        self.hub = hub
        self.logger = logger
    }

    func run(node: ClusterNode, client: NATSClient) async throws {
        let me = node.nodeId
        let subjects = node.subjects
        let prefix = "\(me)-\(tag)-"
        let acksSubject = subjects.node(me, "acks")
        // Events and outcomes are taken on the NATS connection's event loop as they arrive: handing
        // an event over and booking an ack only take locks and schedule writes, and a task switch
        // per message would cost more than either (and add to the cross-node latency).
        let deliveries = try await client.subscribe(to: subjects.node(me, "deliver")) { [weak self] m in
            self?.deliver(m, prefix: prefix, client: client)
        }
        let acks = try await client.subscribe(to: acksSubject) { [weak self] m in self?.outcome(m) }
        let replies = try await client.subscribe(to: subjects.node(me, "replies"))
        let adverts = try await client.subscribe(to: subjects.allBackends)
        let (wake, wakeUp) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        hub.localInstancesChanged.withLockedValue { $0 = Callback { wakeUp.yield() } }
        hub.replyForwarder.withLockedValue {
            $0 = Callback { [weak self] id, data in await self?.forwardReply(id: id, data: data, node: node, client: client) }
        }
        node.onMembershipChange { [weak self] change in
            switch change {
            case .left(let n), .died(let n): self?.drop(self?.state.withLockedValue { $0.directory.drop(node: n) } ?? [])
            case .joined: wakeUp.yield()
            case .restarted: break  // its new advertisement replaces the old instances (new keys)
            }
        }
        let interval = Duration.milliseconds(Int(max(0.05, node.heartbeatInterval) * 1000))
        await withDiscardingTaskGroup { group in
            group.addTask {
                // Advertise on change, and every interval so newcomers and reconnected nodes learn.
                for await _ in wake { self.advertise(prefix: prefix, subject: subjects.backends(node: me), client: client) }
            }
            group.addTask {
                while !Task.isCancelled {
                    wakeUp.yield()
                    try? await Task.sleep(for: interval)
                }
                wakeUp.finish()
            }
            group.addTask {
                for await m in adverts { self.received(advert: m, me: me, subjects: subjects, acksSubject: acksSubject, client: client) }
            }
            group.addTask {
                // Handled on arrival (above); this waits for the subscriptions' end.
                for await _ in deliveries {}
            }
            group.addTask {
                for await _ in acks {}
            }
            group.addTask {
                for await m in replies { self.answerReply(m, client: client) }
            }
            group.addTask {
                for await status in client.statusChanges() {
                    switch status {
                    case .connected:
                        self.state.withLockedValue { $0.linked = true }
                        wakeUp.yield()
                    case .reconnecting, .closed, .connecting:
                        // Remote instances cannot be reached now: only local ones are candidates,
                        // and what was in flight to them is re-routed.
                        let keys = self.state.withLockedValue { s in
                            s.linked = false
                            return s.directory.dropAll()
                        }
                        self.drop(keys)
                    }
                }
            }
        }
        hub.localInstancesChanged.withLockedValue { $0 = nil }
        hub.replyForwarder.withLockedValue { $0 = nil }
        drop(state.withLockedValue { $0.directory.dropAll() })
    }

    // MARK: advertising and the remote instances

    /// Every event name a subscription may take (`["*"]`).
    static let allEvents: Set<String> = Set(YKCMessage.catalogue.map(\.name)).union(["pile_online", "pile_offline", "login", "raw_frame"])

    private func advertise(prefix: String, subject: String, client: NATSClient) {
        let now = Date()
        let locals = hub.localInstances.filter { !$0.isClosed }.sorted { $0.id < $1.id }
        let durable = hub.durableInstances.withLockedValue { $0 }
        let warmup = hub.config.warmupWindow
        let advert = ClusterBackendAdvert(
            node: hub.nodeId,
            instances: locals.map { i in
                ClusterBackendAdvert.Instance(
                    key: prefix + String(i.id), service: i.service, instance: i.name, lane: i.lane,
                    events: i.events.map { Array($0).sorted() }, maxInFlight: i.maxInFlight, durable: durable.contains(i.id),
                    state: i.status(now: now, warmup: warmup).state, joinedSecondsAgo: max(0, now.timeIntervalSince(i.joinedAt)))
            }, batches: true)
        state.withLockedValue { s in s.local = Dictionary(uniqueKeysWithValues: locals.map { ($0.id, $0) }) }
        guard let data = try? JSONEncoder().encode(advert) else { return }
        try? client.publish(ByteBuffer(bytes: data), to: subject)
    }

    private func received(advert m: NATSMessage, me: String, subjects: ClusterSubjects, acksSubject: String, client: NATSClient) {
        guard let advert = try? JSONDecoder().decode(ClusterBackendAdvert.self, from: Data(m.payload.readableBytesView)),
            advert.node != me, ClusterSubjects.isToken(advert.node), m.subject == subjects.backends(node: advert.node)
        else { return }
        let taken: (ClusterBackendDirectory.Changes, [BackendInstance])? = state.withLockedValue { s in
            guard s.linked else { return nil }
            let changes = s.directory.apply(advert)
            return (changes, changes.removed.compactMap { s.remote.removeValue(forKey: $0) })
        }
        guard let (changes, gone) = taken, !changes.isEmpty else { return }
        for instance in gone { hub.unregister(instance) }
        let now = Date()
        // The write rounds run where the NATS connection does (its own thread, apart from the
        // pile loops): the publishes then queue their bytes without waking another thread.
        let loop = client.eventLoop
        let deliverSubject = subjects.node(advert.node, "deliver")
        for i in changes.added {
            // Must-deliver events (bills…) reach a service through the cluster's stream, from a
            // node holding one of its instances (`ClusterStreamDelivery`), never through this
            // relay: a remote instance takes every other type it subscribed to, and is not a
            // durable subscriber of this node's outbox.
            let events = (i.events.map(Set.init) ?? Self.allEvents).filter { !hub.outbox.isDurable($0) }
            guard !events.isEmpty else { continue }
            let instance = hub.register(
                service: i.service, name: i.instance, lane: i.lane, events: events, maxInFlight: i.maxInFlight,
                durable: false, node: advert.node, joinedAt: now.addingTimeInterval(-i.joinedSecondsAgo))
            instance.setReported(draining: i.state == "draining", ejected: i.state == "ejected")
            instance.attach(
                output(
                    for: instance, key: i.key, loop: loop, deliver: deliverSubject, acks: acksSubject, client: client,
                    batched: advert.batches == true))
            // Registered after a drop raced it (the node died meanwhile): take it back out.
            let stale = state.withLockedValue { s in
                guard s.directory.nodes[advert.node]?[i.key] != nil else { return true }
                s.remote[i.key] = instance
                return false
            }
            if stale { hub.unregister(instance) }
        }
        for i in changes.updated {
            state.withLockedValue { $0.remote[i.key] }?.setReported(draining: i.state == "draining", ejected: i.state == "ejected")
        }
    }

    /// Removes the remote instances of `keys` from the hub (their unacked work is re-routed).
    private func drop(_ keys: [String]) {
        let gone = state.withLockedValue { s in keys.compactMap { s.remote.removeValue(forKey: $0) } }
        for instance in gone { hub.unregister(instance) }
    }

    /// A remote instance's write round: the ready events, as encoded, to the holding node: in one
    /// message per `ClusterRelayBatch.maximumBytes` when that node reads batches, else one each.
    private func output(
        for instance: BackendInstance, key: String, loop: any EventLoop, deliver: String, acks: String, client: NATSClient,
        batched: Bool
    ) -> BackendInstanceOutput {
        var batchHeaders = NATSHeaders()
        batchHeaders.append(Header.instance, key)
        batchHeaders.append(Header.batch, "1")
        let headers = batchHeaders
        return BackendInstanceOutput(eventLoop: loop) { [weak self, weak instance] batch in
            var failed: [String] = []
            if batched {
                var start = batch.startIndex
                while start < batch.endIndex {
                    var body = ByteBuffer()
                    var end = start
                    while end < batch.endIndex, end == start || body.readableBytes < ClusterRelayBatch.maximumBytes {
                        ClusterRelayBatch.append(id: batch[end].id, text: batch[end].text, to: &body)
                        end += 1
                    }
                    do { try client.publish(body, to: deliver, replyTo: acks, headers: headers) } catch {
                        failed.append(contentsOf: batch[start..<end].map(\.id))
                    }
                    start = end
                }
            } else {
                for p in batch {
                    var headers = NATSHeaders()
                    headers.append(Header.instance, key)
                    headers.append(Header.event, p.id)
                    do { try client.publish(p.text, to: deliver, replyTo: acks, headers: headers) } catch { failed.append(p.id) }
                }
            }
            self?.relayedOut.wrappingIncrement(by: batch.count - failed.count, ordering: .relaxed)
            if !failed.isEmpty { self?.publishFailures.wrappingIncrement(by: failed.count, ordering: .relaxed) }
            // Not sent (NATS buffer full, connection closed): another instance now.
            if let instance, let hub = self?.hub { for id in failed { hub.remoteGaveUp(id, by: instance) } }
        }
    }

    // MARK: events for this node's instances

    /// An event another node routed to one of this node's instances.
    private func deliver(_ m: NATSMessage, prefix: String, client: NATSClient) {
        guard let headers = m.headers, let key = headers[Header.instance], let origin = m.replyTo else { return }
        let instance: BackendInstance? =
            key.hasPrefix(prefix) ? UInt64(key.dropFirst(prefix.count)).flatMap { n in state.withLockedValue { $0.local[n] } } : nil
        if headers[Header.batch] != nil {
            deliverBatch(m.payload, key: key, instance: instance, origin: origin, client: client)
            return
        }
        guard let id = headers[Header.event] else { return }
        let receipt = receipt(for: origin, batched: false, client: client)
        guard let instance else {
            // Not one of ours (gone, or from this node's previous life).
            publishOutcome(.failed(.instanceGone), key: key, id: id, to: origin, client: client)
            return
        }
        relayedIn.wrappingIncrement(ordering: .relaxed)
        let p = BackendInstance.Pending(
            id: id, text: m.payload, event: "", pile: 0, route: RouteKey(lane: instance.lane, service: instance.service), receipt: receipt)
        if let failure = hub.handOver(p, to: instance) { publishOutcome(.failed(failure), key: key, id: id, to: origin, client: client) }
    }

    /// A batch of events for one of this node's instances (`ClusterRelayBatch`); what cannot be
    /// handed over is given back at once, in a batch of outcomes.
    private func deliverBatch(_ payload: ByteBuffer, key: String, instance: BackendInstance?, origin: String, client: NATSClient) {
        guard let events = ClusterRelayBatch.events(in: payload) else {
            logger.warning("cluster: damaged event batch dropped (its events come back after the ack timeout)", metadata: ["origin": "\(origin)"])
            return
        }
        guard let instance else {
            // Not one of ours (gone, or from this node's previous life).
            for e in events { queueOutcome(.failed(.instanceGone), key: key, id: e.id, to: origin, client: client) }
            return
        }
        let receipt = receipt(for: origin, batched: true, client: client)
        relayedIn.wrappingIncrement(by: events.count, ordering: .relaxed)
        let route = RouteKey(lane: instance.lane, service: instance.service)
        for e in events {
            let p = BackendInstance.Pending(id: e.id, text: e.text, event: "", pile: 0, route: route, receipt: receipt)
            if let failure = hub.handOver(p, to: instance) { queueOutcome(.failed(failure), key: key, id: e.id, to: origin, client: client) }
        }
    }

    /// The receipt for events from `origin`'s ack subject: it sends each outcome there, one
    /// message each or (`batched`, for a node that sent a batch) gathered per event-loop turn.
    private func receipt(for origin: String, batched: Bool, client: NATSClient) -> BackendEventReceipt {
        let slot = batched ? "b:" + origin : origin
        if let r = state.withLockedValue({ $0.receipts[slot] }) { return r }
        let prefix = "\(hub.nodeId)-\(tag)-"
        let r = BackendEventReceipt { [weak self] id, instance, outcome in
            // An ack timeout is counted by the origin's own sweeper; nothing to send.
            if outcome == .failed(.ackTimeout) { return }
            if batched {
                self?.queueOutcome(outcome, key: prefix + String(instance.id), id: id, to: origin, client: client)
            } else {
                self?.publishOutcome(outcome, key: prefix + String(instance.id), id: id, to: origin, client: client)
            }
        }
        return state.withLockedValue { s in
            if s.receipts.count > 4096 { s.receipts = [:] }  // bounded: two per origin node in practice
            if let existing = s.receipts[slot] { return existing }
            s.receipts[slot] = r
            return r
        }
    }

    /// How long outcomes gather before they go back to their origins. Backends ack one event at a
    /// time on their own sockets, so at a few thousand events a second an event-loop turn holds
    /// one ack, and each outcome was a NATS message of its own, woken for by the server and the
    /// origin (docs/BENCHMARKS.md, "Evening pass"). Acks only free credit and feed
    /// health, so they can wait a little; events never do.
    static let outcomeDelay = TimeAmount.milliseconds(2)

    /// Adds an outcome to `origin`'s next batch; the first one since the last flush schedules it,
    /// `outcomeDelay` later.
    private func queueOutcome(_ outcome: BackendEventReceipt.Outcome, key: String, id: String, to origin: String, client: NATSClient) {
        if case .failed = outcome { givenBack.wrappingIncrement(ordering: .relaxed) }
        let schedule = outcomeBatches.withLockedValue { b -> Bool in
            ClusterRelayBatch.appendOutcome(outcome, key: key, id: id, to: &b.pending[origin, default: ByteBuffer()])
            guard !b.scheduled else { return false }
            b.scheduled = true
            return true
        }
        if schedule { client.eventLoop.scheduleTask(in: Self.outcomeDelay) { self.flushOutcomes(client) } }
    }

    private func flushOutcomes(_ client: NATSClient) {
        let taken = outcomeBatches.withLockedValue { b in
            defer { b = ([:], false) }
            return b.pending
        }
        var headers = NATSHeaders()
        headers.append(Header.outcomes, "1")
        for (origin, all) in taken {
            var rest = all
            // Whole lines, at most `maximumBytes` a message.
            while rest.readableBytes > 0 {
                var length = rest.readableBytes
                if length > ClusterRelayBatch.maximumBytes,
                    let cut = rest.readableBytesView.prefix(ClusterRelayBatch.maximumBytes).lastIndex(of: UInt8(ascii: "\n"))
                {
                    length = cut - rest.readerIndex + 1
                }
                guard let chunk = rest.readSlice(length: length) else { break }
                try? client.publish(chunk, to: origin, headers: headers)
            }
        }
    }

    private func publishOutcome(_ outcome: BackendEventReceipt.Outcome, key: String, id: String, to origin: String, client: NATSClient) {
        var headers = NATSHeaders()
        headers.append(Header.instance, key)
        headers.append(Header.event, id)
        switch outcome {
        case .acked: headers.append(Header.outcome, "acked")
        case .failed(let f):
            headers.append(Header.outcome, f.rawValue)
            givenBack.wrappingIncrement(ordering: .relaxed)
        }
        try? client.publish(ByteBuffer(), to: origin, headers: headers)
    }

    /// An ack (or a give-up) for an event this node sent to a remote instance.
    private func outcome(_ m: NATSMessage) {
        if m.headers?[Header.outcomes] != nil {
            let outcomes = ClusterRelayBatch.outcomes(in: m.payload)
            // One lock for the batch: its lines name a few instances, many times each.
            let instances = state.withLockedValue { s in
                Dictionary(Set(outcomes.map(\.key)).compactMap { k in s.remote[String(k)].map { (k, $0) } }) { a, _ in a }
            }
            for o in outcomes {
                guard let instance = instances[o.key] else { continue }
                if o.outcome == .acked {
                    _ = hub.acked(String(o.id), by: instance)
                } else {
                    hub.remoteGaveUp(String(o.id), by: instance)
                }
            }
            return
        }
        guard let headers = m.headers, let key = headers[Header.instance], let id = headers[Header.event],
            let outcome = headers[Header.outcome], let instance = state.withLockedValue({ $0.remote[key] })
        else { return }
        if outcome == "acked" {
            _ = hub.acked(id, by: instance)
        } else {
            hub.remoteGaveUp(id, by: instance)
        }
    }

    // MARK: replies

    /// The node that sent event `id` (`<node>-<boot tag>-<counter>`, `BackendEventEnvelope`).
    static func originNode(ofEvent id: String) -> String? {
        guard let last = id.lastIndex(of: "-") else { return nil }
        let head = id[..<last]
        guard let boot = head.lastIndex(of: "-") else { return nil }
        let node = String(head[..<boot])
        return ClusterSubjects.isToken(node) ? node : nil
    }

    /// Asks the node that sent event `id` to take a backend's reply (nil: not another node's event).
    private func forwardReply(id: String, data: JSONValue, node: ClusterNode, client: NATSClient) async -> BackendHub.ReplyOutcome? {
        // Not gated on this node's membership view: a node that just joined (or whose view lags)
        // may get a reply before it has seen the origin's heartbeat; the event reaching its
        // backend shows the origin was there. A gone origin has no responder: the request fails
        // at once and the backend gets `unknown_id`.
        guard let origin = Self.originNode(ofEvent: id), origin != node.nodeId else { return nil }
        var headers = NATSHeaders()
        headers.append(Header.event, id)
        repliesForwarded.wrappingIncrement(ordering: .relaxed)
        do {
            let answer = try await client.request(
                ByteBuffer(string: data.description), to: node.subjects.node(origin, "replies"), headers: headers, timeout: .seconds(2))
            let text = answer.string
            if text == "accepted" { return .accepted }
            if text.hasPrefix("invalid:") { return .invalid(String(text.dropFirst("invalid:".count))) }
            return .unknown
        } catch {
            logger.debug("cluster: reply not forwarded", metadata: ["event": "\(id)", "node": "\(origin)", "error": "\(error)"])
            return .unknown
        }
    }

    /// A reply another node's backend sent to an event of this node's pile.
    private func answerReply(_ m: NATSMessage, client: NATSClient) {
        var answer = "unknown"
        if let id = m.headers?[Header.event], let data = try? JSONValue.parse(m.string), data.objectValue != nil {
            do {
                if try hub.replied(id, data: data) { answer = "accepted" }
            } catch {
                answer = "invalid:" + error.description
            }
        }
        if answer == "unknown" {
            logger.debug("cluster: forwarded reply matches nothing waiting here", metadata: ["event": "\(m.headers?[Header.event] ?? "-")"])
        }
        try? client.respond(to: m, with: ByteBuffer(string: answer))
    }

    // MARK: visibility

    /// `/v1/stats` → `clusterEvents`: remote instances known and the relay's counters.
    func statsJSON() -> JSONValue {
        let (remote, nodes) = state.withLockedValue { ($0.directory.count, $0.directory.nodes.count) }
        func n(_ a: ManagedAtomic<Int>) -> JSONValue { .number(Double(a.load(ordering: .relaxed))) }
        return .object([
            "remoteInstances": .number(Double(remote)), "remoteNodes": .number(Double(nodes)),
            "relayedOut": n(relayedOut), "relayedIn": n(relayedIn), "givenBack": n(givenBack),
            "publishFailures": n(publishFailures), "repliesForwarded": n(repliesForwarded),
        ])
    }
}
