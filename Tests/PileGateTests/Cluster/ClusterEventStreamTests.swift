import Foundation
import NATS
import NATSTestSupport
import NIOCore
@testable import PileGate
import PileSim
import Testing
import YKC

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Issue 11, items 5 and 6: must-deliver events go into the cluster's JetStream stream before the
/// pile's 0x40, reach the service's backend on whichever node it is connected to, survive a node
/// killed with -9, and survive NATS going away (the local outbox holds them, then forwards them).
/// Everything over real sockets: a real nats-server, gateway nodes, simulated piles, WebSocket
/// backends.
@Suite("Cluster: nothing acknowledged is lost (event stream)", .serialized)
struct ClusterEventStreamTests {
    /// A trade serial for bill `n` of `pile` (pile id, gun 01, a fixed date, then `n`).
    static func serial(_ pile: String, _ n: Int) -> String {
        pile + "01" + "2411231200" + String(format: "%06d", n)
    }

    static func pile(_ id: String, port: Int) async throws -> SimulatedPile {
        var c = SimulatedPileConfig.fast(pileID: PileID(id)!, gunCount: 1)
        c.reconnect = .never
        c.requestBillingModel = false
        let pile = try await SimulatedPile.connect(to: port, c)
        try await pile.waitForLogin()
        return pile
    }

    static func billSerials(_ backend: TestBackend) -> [String] {
        backend.events.filter { $0["event"] as? String == "transaction_record" }
            .compactMap { ($0["data"] as? [String: Any])?["tradeSerial"] as? String }
    }

    @Test("a bill on node A is in the stream before its 0x40, once however often it is sent; the backend on node B gets it once and acks")
    func billAcrossNodes() async throws {
        try await ClusterFixture.with { cluster in
            // A long publish timeout: while NATS is frozen the bill must wait for the stream,
            // not fall back to SQLite.
            let a = try await cluster.startNode("a") { $0.clusterPublishTimeout = 30 }
            let b = try await cluster.startNode("b")
            #expect(await a.eventually(timeout: 10) { await a.streamAvailable() })
            let billing = try await TestBackend.connect(apiPort: b.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["transaction_record"])
            let nats = try await cluster.nats.connect()
            let streamName = "\(cluster.clusterName)_EVENTS"

            let pile = try await Self.pile("66110600000001", port: a.gateway.pilePort ?? 0)
            let serial = TradeSerial(Self.serial("66110600000001", 1))!
            // NATS frozen: the PubAck cannot come, so neither may the 0x40 (the pile re-sends
            // every 200 ms meanwhile).
            cluster.nats.pause()
            try await pile.uploadBill(bill("66110600000001", serial: serial.description))
            try await Task.sleep(for: .milliseconds(1500))
            let waiting = await pile.state()
            cluster.nats.resume()
            let outboxWhileFrozen = try await a.http("GET", "/v1/outbox").json
            #expect(!waiting.billsAcked.contains(serial), "answered without the stream: \(outboxWhileFrozen)")
            #expect((waiting.billSends[serial] ?? 0) >= 2)
            try await pile.waitForBillAck(serial, timeout: .seconds(10))
            #expect(try await nats.jetStream().streamInfo(streamName).state.messages == 1)
            // The same bill again, as a pile that missed its 0x40 sends it: acked, stored once.
            _ = try await pile.send(bill("66110600000001", serial: serial.description), sequence: YKCSequence(0, 77))
            // (The 0x40s of the re-sends made during the freeze come first.)
            var again: YKCFrame?
            for _ in 0..<50 where again == nil {
                let frame = try await pile.waitForFrame(code: 0x40, timeout: .seconds(5))
                if frame.sequence == YKCSequence(0, 77) { again = frame }
            }
            #expect(again != nil)
            #expect(try await nats.jetStream().streamInfo(streamName).state.messages == 1)

            try await billing.waitForEvent("transaction_record", timeout: 10)
            // Acked by the backend: the consumer has nothing pending or waiting for an ack.
            #expect(
                await b.eventually(timeout: 10) {
                    guard let c = await b.streamConsumer("billing") else { return false }
                    return c["pending"] as? Int == 0 && c["ackPending"] as? Int == 0
                })
            try await Task.sleep(for: .milliseconds(500))
            #expect(Self.billSerials(billing) == [serial.description])
            // `/v1/outbox` asks the server for the stream's figures with a short timeout and leaves
            // them out when it does not answer in time (a loaded machine): poll until they are there.
            #expect(
                await b.eventually(timeout: 10) {
                    guard let stream = await b.outboxStream(), stream["available"] as? Bool == true else { return false }
                    return stream["messages"] as? Int == 1
                })
            // `pilegate outbox` shows the stream and the consumer (the same figures, so the same retry).
            let streamLine = "stream \(streamName)   available   messages 1"
            let shows = { (out: CLI.Run) in
                out.stdout.contains(streamLine) && out.lines.contains { $0.contains("billing") && $0.hasSuffix(" 1") }
            }
            var cli = try await CLI.run(["outbox", "--api", b.api])
            for _ in 0..<10 where cli.status == 0 && !shows(cli) {
                try await Task.sleep(for: .milliseconds(300))
                cli = try await CLI.run(["outbox", "--api", b.api])
            }
            #expect(cli.status == 0, "\(cli.stderr)")
            #expect(cli.stdout.contains(streamLine), "\(cli.stdout)")
            #expect(cli.lines.contains { $0.contains("billing") && $0.hasSuffix(" 1") }, "\(cli.stdout)")
            // Node A stored nothing locally: the stream is the store of record.
            let outbox = try await a.http("GET", "/v1/outbox").json
            #expect(outbox["events"] as? Int == 0)
            await pile.stop()
            await billing.close()
            await nats.close()
        }
    }

    @Test("NATS stopped mid-traffic: bills are answered from SQLite, forwarded when NATS is back, stored once, none lost")
    func natsOutage() async throws {
        try await ClusterFixture.with { cluster in
            let a = try await cluster.startNode("a")
            let b = try await cluster.startNode("b")
            #expect(await a.eventually(timeout: 10) { await a.streamAvailable() })
            let billing = try await TestBackend.connect(apiPort: b.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["transaction_record"])
            let id = "66110600000002"
            let pile = try await Self.pile(id, port: a.gateway.pilePort ?? 0)
            var acked: [String] = []
            for n in 1...36 {
                if n == 10 { await cluster.nats.stop() }
                if n == 25 { try await cluster.nats.start() }
                let serial = TradeSerial(Self.serial(id, n))!
                try await pile.uploadBill(bill(id, serial: serial.description))
                try await pile.waitForBillAck(serial, timeout: .seconds(10))
                acked.append(serial.description)
                if n == 20 {
                    // NATS away: answered from SQLite, waiting to be forwarded; stats say so.
                    let stream = await a.outboxStream()
                    #expect(stream?["available"] as? Bool == false)
                    #expect((stream?["forwardBacklog"] as? Int ?? 0) >= 1)
                    #expect(try await a.clusterStats()["nats"] as? String != "connected")
                }
                try await Task.sleep(for: .milliseconds(30))
            }
            // Some bills were answered from SQLite while NATS was away, and forwarded since.
            let counters = try await a.http("GET", "/v1/outbox").json["counters"] as? [String: Any]
            #expect((counters?["eventsStored"] as? Int ?? 0) >= 1)
            #expect(await a.eventually(timeout: 20) { await a.outboxStream()?["forwardBacklog"] as? Int == 0 })
            let sent = acked
            // The stream holds each bill once: re-sends and the forwarding from SQLite are deduplicated
            // by trade serial.
            #expect(await a.eventually(timeout: 10) { await a.outboxStream()?["messages"] as? Int == sent.count })
            // Every bill the pile got 0x40 for reaches the billing service, and nothing else does.
            #expect(await b.eventually(timeout: 30) { Set(Self.billSerials(billing)) == Set(sent) })
            try await Task.sleep(for: .seconds(1))
            let received = Self.billSerials(billing)
            #expect(Set(received) == Set(acked))
            // Delivery is at least once (backends deduplicate by trade serial): bills the service got
            // before NATS went away may come again after its restart, as the server need not have
            // persisted the consumer's last acks when it stopped. Bills stored since are delivered once.
            let duplicates = Set(Dictionary(grouping: received, by: { $0 }).filter { $0.value.count > 1 }.keys)
            let beforeOutage = Set(acked.prefix(9))
            #expect(
                duplicates.isSubset(of: beforeOutage),
                "delivered twice though stored after the outage: \(duplicates.subtracting(beforeOutage).sorted())")
            await pile.stop()
            await billing.close()
        }
    }

    @Test("a node killed with -9 under bill load and never restarted: every bill a pile got 0x40 for reaches the billing service")
    func nodeKilled() async throws {
        try await ClusterFixture.with { cluster in
            let serve = try ServeProcess.start([
                "natsURL": cluster.nats.url, "clusterName": cluster.clusterName, "nodeId": "a",
                "clusterHeartbeatInterval": "0.1", "clusterNodeTimeout": "1",
            ])
            defer { serve.cleanUp() }
            let ports = try await serve.waitUntilStarted()
            let a = ExternalNode(apiPort: ports.api)
            #expect(await a.eventually(timeout: 15) { await a.streamAvailable() }, "\(serve.stderr)")
            let b = try await cluster.startNode("b")
            let billing = try await TestBackend.connect(apiPort: b.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["transaction_record"], maxInFlight: 256)

            let ids = (1...4).map { "6611060000001\($0)" }
            var connected: [SimulatedPile] = []
            for id in ids { connected.append(try await Self.pile(id, port: ports.pile)) }
            let piles = connected
            // Each pile uploads bills back to back; the node dies in the middle of it.
            let load = Task {
                await withTaskGroup(of: Void.self) { group in
                    for (pile, id) in zip(piles, ids) {
                        group.addTask {
                            for n in 1...100_000 {
                                guard !Task.isCancelled else { return }
                                let serial = TradeSerial(Self.serial(id, n))!
                                guard (try? await pile.uploadBill(bill(id, serial: serial.description))) != nil,
                                    (try? await pile.waitForBillAck(serial, timeout: .seconds(3))) != nil
                                else { return }
                            }
                        }
                    }
                }
            }
            var ackedSoFar = 0
            let deadline = Date().addingTimeInterval(30)
            while ackedSoFar < 200 && Date() < deadline {
                try await Task.sleep(for: .milliseconds(50))
                ackedSoFar = 0
                for pile in piles { ackedSoFar += await pile.state().billsAcked.count }
            }
            serve.signal(SIGKILL)
            _ = await serve.waitForExit(timeout: 10)
            load.cancel()
            await load.value
            var ackedToPiles: Set<String> = []
            for pile in piles { ackedToPiles.formUnion(await pile.state().billsAcked.map(\.description)) }
            let acked = ackedToPiles
            #expect(acked.count >= 200)
            #expect(await b.eventually(timeout: 60) { acked.isSubset(of: Set(Self.billSerials(billing))) })
            let missing = acked.subtracting(Self.billSerials(billing))
            #expect(missing.isEmpty, "\(missing.count) acked bills never reached the billing service")
            for pile in piles { await pile.stop() }
            await billing.close()
        }
    }
}

@Suite("Cluster: event stream pieces")
struct ClusterEventStreamPieceTests {
    @Test("a service's consumer name is a valid JetStream name, distinct for services that differ only in '.' and '_'")
    func consumerNames() {
        #expect(ClusterStreamDelivery.consumerName(for: "billing") == "billing")
        let dotted = ClusterStreamDelivery.consumerName(for: "a.b")
        let underscored = ClusterStreamDelivery.consumerName(for: "a_b")
        #expect(ClusterSubjects.isToken(dotted))
        #expect(dotted != underscored)
        #expect(ClusterSubjects.isToken(ClusterStreamDelivery.consumerName(for: String(repeating: "x.", count: 40))))
    }

    @Test("a bill's stream message id is its trade serial (re-sends dedup); other events use their event id")
    func messageIDs() {
        let pile = PileID("66110600000009")!
        let serial = TradeSerial(ClusterEventStreamTests.serial("66110600000009", 1))!
        let bill = OutboxEvent(
            id: "n-x-1", event: "transaction_record", code: 0x3B, pile: pile, gun: 1, lane: "", tradeSerial: serial, receivedAt: Date(),
            payload: ByteBuffer())
        #expect(ClusterEventStream.messageID(for: bill) == "bill:\(serial)")
        var end = bill
        end.event = "charging_end"
        #expect(ClusterEventStream.messageID(for: end) == "n-x-1")
    }
}

/// A node run as a `pilegate serve` process, reached over its API.
struct ExternalNode: Sendable {
    let apiPort: Int

    func outboxStream() async -> [String: Any]? {
        guard let (data, _) = try? await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(apiPort)/v1/outbox")!),
            let doc = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return doc["stream"] as? [String: Any]
    }

    func streamAvailable() async -> Bool { await outboxStream()?["available"] as? Bool == true }

    func eventually(timeout: TimeInterval, _ condition: @Sendable () async -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if await condition() { return true }
            try? await Task.sleep(nanoseconds: 50_000_000)
        }
        return await condition()
    }
}

extension AssembledGateway {
    /// `/v1/outbox` → `stream` (cluster mode).
    func outboxStream() async -> [String: Any]? {
        (try? await http("GET", "/v1/outbox"))?.json["stream"] as? [String: Any]
    }

    func streamAvailable() async -> Bool { await outboxStream()?["available"] as? Bool == true }

    /// The durable consumer of `service` as `/v1/outbox` shows it.
    func streamConsumer(_ service: String) async -> [String: Any]? {
        (await outboxStream()?["consumers"] as? [String: Any])?[service] as? [String: Any]
    }
}
