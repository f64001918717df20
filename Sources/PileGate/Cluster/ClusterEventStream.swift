import Foundation
import Logging
import NATS
import NIOConcurrencyHelpers
import NIOCore
import YKC

/// Cluster mode's store of record for must-deliver events (bills, charging ends, start/stop
/// replies: `Outbox.Settings.events`), so that nothing a pile was acknowledged for is lost when
/// a node dies (docs/CLUSTER.md, "Nothing acknowledged is lost").
///
/// - The stream `<cluster>_EVENTS` (file storage, `clusterStreamReplicas` replicas, limits
///   retention for `clusterStreamMaxAge`, discard new) captures `<cluster>.durable.<event>.<pile>`.
/// - The outbox hands every must-deliver event here first (`OutboxRelay`); the pile's 0x40 goes
///   out after the PubAck. Each event carries `Nats-Msg-Id` = `bill:<trade serial>` for bills
///   (a re-sent bill is stored once within `clusterDuplicateWindow`) and its event id otherwise
///   (forwarding from SQLite again is harmless).
/// - When NATS is unreachable, the stream is missing, or a publish fails or times out
///   (`clusterPublishTimeout`), the outbox commits to SQLite instead (0x40 after that commit)
///   and forwards the event here when the stream is back.
/// - `ClusterStreamDelivery` delivers the stream to the backends connected to this node.
/// - Dead letters (events a service did not ack in `clusterMaxDeliver` deliveries) are counted
///   from the server's advisories and logged with their stream sequence.
final class ClusterEventStream: ClusterComponent, OutboxRelay {
    struct Settings: Sendable {
        var duplicateWindow: Duration
        var maxAge: Duration
        var replicas: Int
        var publishTimeout: Duration
        var delivery: ClusterStreamDelivery.Settings

        init(config: GatewayConfiguration) {
            duplicateWindow = .milliseconds(Int64(config.clusterDuplicateWindow * 1000))
            maxAge = .milliseconds(Int64(config.clusterStreamMaxAge * 1000))
            replicas = config.clusterStreamReplicas
            publishTimeout = .milliseconds(Int64(config.clusterPublishTimeout * 1000))
            delivery = ClusterStreamDelivery.Settings(
                ackWait: .milliseconds(Int64(config.clusterAckWait * 1000)), maxDeliver: config.clusterMaxDeliver)
        }
    }

    struct Counters: Sendable {
        var stored = 0
        var duplicates = 0
        var failures = 0
        var deadLetters = 0
    }

    var name: String { "event stream" }
    let subjects: ClusterSubjects
    let streamName: String
    let settings: Settings
    let logger: Logger
    let delivery: ClusterStreamDelivery
    let outbox: Outbox
    private let connection = NIOLockedValueBox<NATSClient?>(nil)
    /// The stream exists as far as this node knows (created or found at the last check).
    private let ready = NIOLockedValueBox(false)
    /// Wakes the stream check early (a publish found no stream).
    private let recheck: AsyncStream<Void>.Continuation
    private let rechecks: AsyncStream<Void>
    let counters = NIOLockedValueBox(Counters())

    init(hub: BackendHub, subjects: ClusterSubjects, settings: Settings, logger: Logger) {
        self.subjects = subjects
        self.streamName = subjects.resource("EVENTS")
        self.settings = settings
        self.logger = logger
        self.outbox = hub.outbox
        self.delivery = ClusterStreamDelivery(hub: hub, subjects: subjects, stream: streamName, settings: settings.delivery, logger: logger)
        (rechecks, recheck) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    var streamConfiguration: StreamConfiguration {
        StreamConfiguration(
            name: streamName, subjects: [subjects.allDurable], retention: .limits, storage: .file, discard: .new,
            replicas: settings.replicas, maxAge: settings.maxAge, duplicateWindow: settings.duplicateWindow,
            description: "pilegate must-deliver events (bills); docs/CLUSTER.md")
    }

    // MARK: ClusterComponent

    func run(node: ClusterNode, client: NATSClient) async throws {
        connection.withLockedValue { $0 = client }
        await withDiscardingTaskGroup { group in
            group.addTask { await self.keepStream(client) }
            group.addTask { await self.watchStatus(client) }
            group.addTask { await self.countDeadLetters(client) }
            group.addTask { await self.delivery.run(client: client) }
        }
    }

    /// Makes sure the stream exists: at start, after every reconnect (the server may have lost
    /// its store), and when a publish found no stream; retried every second until it succeeds.
    private func keepStream(_ client: NATSClient) async {
        var checks = rechecks.makeAsyncIterator()
        var lastProblem = ""
        while !Task.isCancelled {
            if client.status == .connected {
                do {
                    try await ensureStream(client.jetStream())
                    ready.withLockedValue { $0 = true }
                    lastProblem = ""
                } catch {
                    ready.withLockedValue { $0 = false }
                    let problem = "\(error)"
                    if problem != lastProblem {
                        logger.error("cluster: event stream unavailable, must-deliver events stay in the local outbox", metadata: ["error": "\(problem)"])
                        lastProblem = problem
                    }
                    try? await Task.sleep(for: .seconds(1))
                    continue
                }
            }
            // Until the next reason to check.
            guard await checks.next() != nil else { return }
        }
    }

    private func ensureStream(_ js: JetStream) async throws {
        do {
            try await js.createStream(streamConfiguration)
        } catch NATSError.jetStream(let e) where e.errorCode == JetStreamAPIError.streamNameInUse {
            // It exists with other settings (an earlier version, another window): bring it in line.
            try await js.updateStream(streamConfiguration)
        }
    }

    private func watchStatus(_ client: NATSClient) async {
        for await status in client.statusChanges() {
            if status == .connected {
                recheck.yield()
            } else {
                ready.withLockedValue { $0 = false }
            }
        }
    }

    /// Counts the server's max-deliveries advisories for this stream: events a service did not
    /// ack within `clusterMaxDeliver` deliveries; they stay in the stream at their sequence.
    private func countDeadLetters(_ client: NATSClient) async {
        guard let advisories = try? await client.subscribe(to: "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.\(streamName).*") else { return }
        for await message in advisories {
            counters.withLockedValue { $0.deadLetters += 1 }
            let doc = try? JSONValue.parse(message.string)
            logger.error(
                "cluster: dead letter, a service did not ack an event within clusterMaxDeliver deliveries",
                metadata: [
                    "consumer": "\(doc?["consumer"]?.stringValue ?? "?")", "streamSequence": "\(doc?["stream_seq"]?.intValue ?? 0)",
                    "deliveries": "\(doc?["deliveries"]?.intValue ?? 0)",
                ])
        }
    }

    // MARK: OutboxRelay

    var isAvailable: Bool {
        guard ready.withLockedValue({ $0 }), let client = connection.withLockedValue({ $0 }) else { return false }
        return client.status == .connected
    }

    /// The deduplication key: the outbox's (`OutboxStore.dedupKey`: `bill:<trade serial>` for
    /// bills, so a re-sent bill is stored once), else the event id.
    static func messageID(for event: OutboxEvent) -> String {
        OutboxStore.dedupKey(event: event.event, tradeSerial: event.tradeSerial?.description) ?? event.id
    }

    func store(_ event: OutboxEvent) async throws -> Bool {
        guard let client = connection.withLockedValue({ $0 }) else { throw NATSError.connectionClosed }
        var headers = NATSHeaders()
        headers[ClusterStreamDelivery.idHeader] = event.id
        if !event.lane.isEmpty { headers[ClusterStreamDelivery.laneHeader] = event.lane }
        do {
            let ack = try await client.jetStream().publish(
                event.payload, to: subjects.durable(event: event.event, pile: event.pile.description), headers: headers,
                messageID: Self.messageID(for: event), expectedStream: streamName, timeout: settings.publishTimeout)
            counters.withLockedValue { if ack.duplicate { $0.duplicates += 1 } else { $0.stored += 1 } }
            return !ack.duplicate
        } catch {
            counters.withLockedValue { $0.failures += 1 }
            if let e = error as? NATSError, case .noResponders = e {
                // No stream captures the subject (the server lost its store): create it again.
                ready.withLockedValue { $0 = false }
                recheck.yield()
            }
            throw error
        }
    }

    func acked(id: String, service: String) {
        delivery.acked(id: id, service: service)
    }

    // MARK: visibility

    /// `/v1/outbox` → `stream`: the stream's state, each consumer's (pending, waiting for ack,
    /// redelivered), this node's counters and the forwarding backlog.
    func summary() async -> JSONValue? {
        var o: [String: JSONValue] = ["name": .string(streamName), "available": .bool(isAvailable)]
        let c = counters.withLockedValue { $0 }
        let d = delivery.counters.withLockedValue { $0 }
        let figures: [(String, Int)] = [
            ("stored", c.stored), ("duplicates", c.duplicates), ("publishFailures", c.failures), ("deadLetters", c.deadLetters),
            ("delivered", d.delivered), ("acked", d.acked), ("redelivered", d.redelivered), ("skipped", d.skipped),
            ("naks", d.naks), ("ackExpired", d.expired),
        ]
        var counterObject: [String: JSONValue] = [:]
        for (key, value) in figures { counterObject[key] = .number(Double(value)) }
        o["counters"] = .object(counterObject)
        o["inFlight"] = .object(delivery.inFlightCounts().mapValues { .number(Double($0)) })
        guard isAvailable, let client = connection.withLockedValue({ $0 }) else { return .object(o) }
        let js = client.jetStream(timeout: .seconds(1))
        if let info = try? await js.streamInfo(streamName) {
            o["messages"] = .number(Double(info.state.messages))
            o["bytes"] = .number(Double(info.state.bytes))
            o["firstSequence"] = .number(Double(info.state.firstSequence))
            o["lastSequence"] = .number(Double(info.state.lastSequence))
            o["replicas"] = .number(Double(info.config.replicas))
            o["duplicateWindowSeconds"] = .number(Double((info.config.duplicateWindow ?? .zero).components.seconds))
        }
        if let list = try? await client.request("", to: "$JS.API.CONSUMER.LIST.\(streamName)", timeout: .seconds(1)),
            let doc = try? JSONValue.parse(list.string), case .array(let consumers)? = doc["consumers"]
        {
            var out: [String: JSONValue] = [:]
            for consumer in consumers {
                guard let name = consumer["name"]?.stringValue else { continue }
                let service = (consumer["config"]?["description"]?.stringValue ?? "").replacingOccurrences(of: "pilegate service ", with: "")
                var entry: [String: JSONValue] = ["service": .string(service)]
                entry["pending"] = consumer["num_pending"] ?? .number(0)
                entry["ackPending"] = consumer["num_ack_pending"] ?? .number(0)
                entry["redelivered"] = consumer["num_redelivered"] ?? .number(0)
                entry["waiting"] = consumer["num_waiting"] ?? .number(0)
                entry["ackFloor"] = consumer["ack_floor"]?["stream_seq"] ?? .number(0)
                out[name] = .object(entry)
            }
            o["consumers"] = .object(out)
        }
        return .object(o)
    }

    func collectMetrics(_ w: MetricsWriter) {
        let c = counters.withLockedValue { $0 }
        let d = delivery.counters.withLockedValue { $0 }
        // The NATS connection: its state, reconnects, and publishes dropped while it was away
        // (events that are not must-deliver, beyond the client's reconnect buffer).
        let client = connection.withLockedValue { $0 }
        w.gauge("pilegate_cluster_nats_connected", [], client?.status == .connected ? 1 : 0)
        if let s = client?.statistics {
            w.counter("pilegate_cluster_nats_reconnects_total", [], s.reconnects)
            w.counter("pilegate_cluster_nats_dropped_publishes_total", [], s.droppedPublishes)
        }
        w.gauge("pilegate_cluster_stream_available", [], isAvailable ? 1 : 0)
        w.counter("pilegate_cluster_stream_stored_total", [], c.stored)
        w.counter("pilegate_cluster_stream_duplicates_total", [], c.duplicates)
        w.counter("pilegate_cluster_stream_publish_failures_total", [], c.failures)
        w.counter("pilegate_cluster_stream_dead_letters_total", [], c.deadLetters)
        w.counter("pilegate_cluster_stream_delivered_total", [], d.delivered)
        w.counter("pilegate_cluster_stream_acked_total", [], d.acked)
        w.counter("pilegate_cluster_stream_redelivered_total", [], d.redelivered)
        w.counter("pilegate_cluster_stream_naks_total", [], d.naks)
        w.counter("pilegate_cluster_stream_ack_expired_total", [], d.expired)
        for (service, n) in delivery.inFlightCounts() {
            w.gauge("pilegate_cluster_stream_in_flight", [("service", service)], Double(n))
        }
        if let summary = outbox.latestSummary.withLockedValue({ $0 }) {
            let backlog = summary.pending[Outbox.relayService]?.values.reduce(0, +) ?? 0
            w.gauge("pilegate_cluster_forward_backlog", [], Double(backlog))
        }
    }
}
