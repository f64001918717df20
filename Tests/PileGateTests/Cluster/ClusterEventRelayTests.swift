import Foundation
import NATSTestSupport
@testable import PileGate
import PileSim
import Testing
import YKC

/// Backends see one gateway (issue 11, item 1): real nodes on a real nats-server, piles and
/// backends over real sockets, each on the node the test says.
@Suite("Cluster: backends on any node get every node's pile events", .serialized, .timeLimit(.minutes(2)))
struct ClusterEventRelayTests {
    @Test("a backend on node B gets the events of a pile on node A, in order, once")
    func remoteBackendGetsEvents() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let a = cluster.nodes[0]
            let b = cluster.nodes[1]
            let billing = try await TestBackend.connect(apiPort: b.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["pile_online", "heartbeat", "pile_offline"])
            #expect(await a.eventually { await a.relayInstances().contains { $0["instance"] as? String == "b1" && $0["node"] as? String == "n2" } })
            let pile = try await a.startPile("55010600007001")
            let online = try await billing.waitForEvent("pile_online")
            #expect(online["pile"] as? String == "55010600007001")
            #expect(online["node"] as? String == "n1", "the event names the node holding the pile")
            try await billing.waitFor("three heartbeats", timeout: 10) { _ in
                billing.events.filter { $0["event"] as? String == "heartbeat" }.count >= 3
            }
            await pile.stop()
            try await billing.waitForEvent("pile_offline")
            // Per-pile order: the pile's node numbers its events; they arrive in that order.
            let counters = billing.events.compactMap { ($0["id"] as? String)?.split(separator: "-").last.flatMap { Int($0) } }
            #expect(counters == counters.sorted(), "events of one pile out of order: \(counters)")
            #expect(Set(counters).count == counters.count, "an event delivered twice")
            // The pile's node counted the routing and, as their outcomes come back from B (in a batch
            // per event-loop turn, after the backend's acks), the acks; the backend's node relayed.
            #expect(await a.eventually {
                let hub = (try? await a.http("GET", "/v1/hub").json) ?? [:]
                let traffic = ((hub["lanes"] as? [String: Any])?[""] as? [String: Any])?["billing"] as? [String: Any]
                return (traffic?["acks"] as? Int ?? 0) >= 4
            })
            let relayed = try await b.http("GET", "/v1/stats").json
            #expect((((relayed["extensions"] as? [String: Any])?["clusterEvents"] as? [String: Any])?["relayedIn"] as? Int ?? 0) >= 4)
            await billing.close()
        }
    }

    @Test("two instances of one service on two nodes: every event once, each pile on the instance the hash picks on every node")
    func onceAcrossNodes() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let a = cluster.nodes[0]
            let b = cluster.nodes[1]
            let onA = try await TestBackend.connect(apiPort: a.apiPort)
            try await onA.subscribe(service: "svc", instance: "sa", events: ["heartbeat"])
            let onB = try await TestBackend.connect(apiPort: b.apiPort)
            try await onB.subscribe(service: "svc", instance: "sb", events: ["heartbeat"])
            for node in [a, b] { #expect(await node.eventually { await node.relayInstances().count == 2 }) }
            // Piles chosen so that each instance owns some, on both nodes (weighted rendezvous,
            // the same hash on every node).
            func owner(_ id: String) -> String {
                let raw = PileID(id)?.raw ?? 0
                let sa = BackendRouter.score(pile: raw, seed: BackendRouter.seed(service: "svc", name: "sa"), weight: 1)
                let sb = BackendRouter.score(pile: raw, seed: BackendRouter.seed(service: "svc", name: "sb"), weight: 1)
                return sa > sb ? "sa" : "sb"
            }
            // Two piles each instance owns, ordered [sa, sb, sb, sa]: node A (even indexes) and
            // node B (odd) each hold a pile of each instance. Bounded search (a pure function of
            // the ids; one in two piles goes to each instance).
            var owned: [String: [String]] = [:]
            for n in 7101...7400 where (owned["sa"]?.count ?? 0) < 2 || (owned["sb"]?.count ?? 0) < 2 {
                let id = "5501060000\(n)"
                owned[owner(id), default: []].append(id)
            }
            let sa = owned["sa"] ?? []
            let sb = owned["sb"] ?? []
            try #require(sa.count >= 2 && sb.count >= 2, "no pile ids split between the instances")
            let ids = [sa[0], sb[0], sb[1], sa[1]]
            var piles: [SimulatedPile] = []
            for (i, id) in ids.enumerated() { piles.append(try await (i % 2 == 0 ? a : b).startPile(id)) }
            for id in ids {
                let backend = owner(id) == "sa" ? onA : onB
                try await backend.waitForEvent("heartbeat", timeout: 10) { $0["pile"] as? String == id }
            }
            try await Task.sleep(nanoseconds: 800_000_000)
            for pile in piles { await pile.stop() }
            let all = onA.events + onB.events
            let eventIds = all.compactMap { $0["id"] as? String }
            #expect(Set(eventIds).count == eventIds.count, "an event reached both instances")
            for id in ids {
                let wrong = (owner(id) == "sa" ? onB : onA).events.filter { $0["pile"] as? String == id }
                #expect(wrong.isEmpty, "pile \(id) reached the instance the hash did not pick")
            }
            #expect(onA.events.contains { $0["node"] as? String == "n2" } || onB.events.contains { $0["node"] as? String == "n1" })
            await onA.close()
            await onB.close()
        }
    }

    @Test("lanes across nodes: the lane's instance on another node, fallback to base, back to the lane, never base into the lane")
    func lanesAcrossNodes() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let a = cluster.nodes[0]
            let b = cluster.nodes[1]
            let rules = try await a.http("PUT", "/v1/lanes", body: #"{"rules":[{"lane":"gray","match":{"pilePrefix":"3201"}}]}"#)
            #expect(rules.status == 200)
            let base = try await TestBackend.connect(apiPort: a.apiPort)
            try await base.subscribe(service: "billing", instance: "b0", events: ["heartbeat"])
            var gray: TestBackend? = try await TestBackend.connect(apiPort: b.apiPort)
            try await gray?.subscribe(service: "billing", instance: "g1", lane: "gray", events: ["heartbeat"])
            #expect(await a.eventually { await a.relayInstances().contains { $0["instance"] as? String == "g1" } })
            let grayPile = try await a.startPile("32010600007201")
            let basePile = try await a.startPile("55010600007202")
            try await gray?.waitForEvent("heartbeat", timeout: 10) { $0["pile"] as? String == "32010600007201" && $0["lane"] as? String == "gray" }
            try await base.waitForEvent("heartbeat", timeout: 10) { $0["pile"] as? String == "55010600007202" }
            try await Task.sleep(nanoseconds: 500_000_000)
            #expect(!(gray?.events.contains { $0["pile"] as? String == "55010600007202" } ?? true), "base leaked into the lane")
            #expect(!base.events.contains { $0["pile"] as? String == "32010600007201" }, "lane traffic went to base while the lane was up")
            // The lane's only instance (on B) goes: the pile falls back to base on A, counted there.
            await gray?.close()
            gray = nil
            try await base.waitForEvent("heartbeat", timeout: 10) { $0["pile"] as? String == "32010600007201" && $0["lane"] as? String == "gray" }
            let hub = try await a.http("GET", "/v1/hub").json
            let grayTraffic = ((hub["lanes"] as? [String: Any])?["gray"] as? [String: Any])?["billing"] as? [String: Any]
            #expect((grayTraffic?["fallbacks"] as? Int ?? 0) > 0)
            // A gray instance comes back on B: the pile's events return to the lane.
            let again = try await TestBackend.connect(apiPort: b.apiPort)
            try await again.subscribe(service: "billing", instance: "g2", lane: "gray", events: ["heartbeat"])
            try await again.waitForEvent("heartbeat", timeout: 10) { $0["pile"] as? String == "32010600007201" }
            #expect(!again.events.contains { $0["pile"] as? String == "55010600007202" }, "base leaked into the lane")
            await grayPile.stop()
            await basePile.stop()
            await again.close()
            await base.close()
        }
    }

    @Test("a billing-model request of a pile on A, answered by a backend on B, reaches the pile; an invalid reply gets its error on B")
    func replyAcrossNodes() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let a = cluster.nodes[0]
            let b = cluster.nodes[1]
            let billing = try await TestBackend.connect(apiPort: b.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["billing_model_request"])
            #expect(await a.eventually { await a.relayInstances().contains { $0["instance"] as? String == "b1" } })
            // One request (no resend while the test answers it: a resend would replace it).
            let pile = try await a.startPile("55010600007301") {
                $0.requestBillingModel = true
                $0.billingModelRetryInterval = .seconds(60)
            }
            let request = try await billing.waitForEvent("billing_model_request", timeout: 10)
            #expect(request["replyExpected"] as? Bool == true)
            #expect(request["node"] as? String == "n1")
            let id = request["id"] as? String ?? ""
            // Invalid first: the error comes back from A through B; the request stays pending.
            billing.send(#"{"type":"reply","id":"\#(id)","data":{"billingModel":"0001"}}"#)
            let error = try await billing.waitFor("invalid_reply") { $0["type"] as? String == "error" }
            #expect(error["error"] as? String == "invalid_reply")
            #expect(error["id"] as? String == id)
            let periods = (0..<48).map { $0 < 16 ? "\"valley\"" : "\"flat\"" }.joined(separator: ",")
            billing.send(#"""
                {"type":"reply","id":"\#(id)","data":{"billingModel":"0001","sharpEnergyPrice":1.2,"sharpServiceFee":0.4,"peakEnergyPrice":1.0,"peakServiceFee":0.4,"flatEnergyPrice":0.8,"flatServiceFee":0.4,"valleyEnergyPrice":0.77,"valleyServiceFee":0.4,"lossRatio":0,"periods":[\#(periods)]}}
                """#)
            let state = try await pile.waitUntil(timeout: .seconds(5), "model") { $0.billingModel != nil }
            #expect(state.billingModel?.valleyEnergyPrice == YKCDecimal("0.77"))
            // A second reply to the same event: unknown, as on one node.
            billing.send(#"{"type":"reply","id":"\#(id)","data":{"billingModel":"0002"}}"#)
            try await billing.waitFor("unknown_id") { $0["type"] as? String == "error" && $0["error"] as? String == "unknown_id" }
            await pile.stop()
            await billing.close()
        }
    }

    @Test("a card start request (0x31) of a pile on B, approved by a backend connected only to A, reaches the pile as 0x32")
    func startRequestAcrossNodes() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let a = cluster.nodes[0]
            let b = cluster.nodes[1]
            let billing = try await TestBackend.connect(apiPort: a.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["start_request"])
            #expect(await b.eventually { await b.relayInstances().contains { $0["instance"] as? String == "b1" && $0["node"] as? String == "n1" } })
            let pile = try await b.startPile("55010600007351", guns: 2)
            try await pile.waitForLogin()
            let card = BinaryID(raw: 0xD14B_0A54)
            async let reply = pile.requestCardStart(gun: 1, card: card, timeout: .seconds(8))
            let request = try await billing.waitForEvent("start_request", timeout: 8) {
                ($0["data"] as? [String: Any])?["cardNumber"] as? String == card.description
            }
            #expect(request["replyExpected"] as? Bool == true)
            #expect(request["node"] as? String == "n2", "the event names the node holding the pile")
            let id = try #require(request["id"] as? String)
            let serial = "55010600007351" + "01" + "241130235900" + "0001"
            billing.send(#"""
                {"type":"reply","id":"\#(id)","data":{"tradeSerial":"\#(serial)","logicalCardNumber":"0000001000000573","balance":42.5,"authResult":"succeeded","failureReason":"none"}}
                """#)
            let answer = try await reply
            #expect(answer.authResult == .succeeded)
            #expect(answer.tradeSerial.description == serial)
            #expect(answer.balance == YKCDecimal(units: 4250, scale: 2))
            // The reply travelled A → B once: B's relay does not count it, A's does.
            let relayed = try await a.http("GET", "/v1/stats").json
            #expect((((relayed["extensions"] as? [String: Any])?["clusterEvents"] as? [String: Any])?["repliesForwarded"] as? Int ?? 0) == 1)
            #expect(!billing.messages.contains { $0["type"] as? String == "error" }, "the backend got an error for its reply")
            await pile.stop()
            await billing.close()
        }
    }

    @Test("a remote instance that does not ack is ejected by the pile's node, and its events go to another instance")
    func remoteEjection() async throws {
        try await ClusterFixture.with { cluster in
            let a = try await cluster.startNode("n1") {
                $0.hub.ackTimeout = 0.3
                $0.hub.failuresToEject = 1
                $0.hub.baseEjection = 30
            }
            let b = try await cluster.startNode("n2")
            let silent = try await TestBackend.connect(apiPort: b.apiPort, autoAck: false)
            try await silent.subscribe(service: "s", instance: "silent", events: ["heartbeat"])
            #expect(await a.eventually { await a.relayInstances().contains { $0["instance"] as? String == "silent" } })
            let pile = try await a.startPile("55010600007401")
            try await silent.waitForEvent("heartbeat", timeout: 10)
            #expect(await a.eventually(timeout: 5) {
                await a.relayInstances().first { $0["instance"] as? String == "silent" }?["state"] as? String == "ejected"
            })
            let healthy = try await TestBackend.connect(apiPort: a.apiPort)
            try await healthy.subscribe(service: "s", instance: "healthy", events: ["heartbeat"])
            try await healthy.waitForEvent("heartbeat", timeout: 10) { $0["pile"] as? String == "55010600007401" }
            let countAtSilent = silent.events.count
            try await Task.sleep(nanoseconds: 500_000_000)
            #expect(silent.events.count == countAtSilent, "an ejected remote instance still got new work")
            let status = await a.relayInstances().first { $0["instance"] as? String == "silent" }
            #expect(status?["node"] as? String == "n2")
            #expect((status?["ejections"] as? Int ?? 0) >= 1)
            await pile.stop()
            await silent.close()
            await healthy.close()
        }
    }

    @Test("a node that leaves takes its instances with it: what they had in flight and the pile's next events go to the instance left")
    func nodeLeaves() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let a = cluster.nodes[0]
            let b = cluster.nodes[1]
            // Never acks: the events it gets stay in flight on A's side.
            let remote = try await TestBackend.connect(apiPort: b.apiPort, autoAck: false)
            try await remote.subscribe(service: "s", instance: "r", events: ["heartbeat"])
            #expect(await a.eventually { await a.relayInstances().contains { $0["instance"] as? String == "r" } })
            let pile = try await a.startPile("55010600007501")
            let held = try await remote.waitForEvent("heartbeat", timeout: 10)
            let heldId = try #require(held["id"] as? String)
            let local = try await TestBackend.connect(apiPort: a.apiPort)
            try await local.subscribe(service: "s", instance: "l", events: ["heartbeat"])
            await cluster.stop(b)
            #expect(await a.eventually(timeout: 5) { await a.relayInstances().allSatisfy { $0["node"] == nil } })
            // The unacked event is re-routed to the instance left (at least once: same id).
            try await local.waitForEvent("heartbeat", timeout: 10) { $0["id"] as? String == heldId }
            func counter(_ id: String?) -> Int { id?.split(separator: "-").last.flatMap { Int($0) } ?? 0 }
            try await local.waitForEvent("heartbeat", timeout: 10) { counter($0["id"] as? String) > counter(heldId) }
            await pile.stop()
            await remote.close()
            await local.close()
        }
    }

    @Test("NATS away: remote instances stop being candidates, what they had in flight and the next events go to local ones; they come back with NATS")
    func natsAway() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let a = cluster.nodes[0]
            let b = cluster.nodes[1]
            // Never acks: what it gets stays in flight on A's side.
            let remote = try await TestBackend.connect(apiPort: b.apiPort, autoAck: false)
            try await remote.subscribe(service: "s", instance: "r", events: ["heartbeat"])
            #expect(await a.eventually { await a.relayInstances().contains { $0["instance"] as? String == "r" } })
            let pile = try await a.startPile("55010600007601")
            let held = try await remote.waitForEvent("heartbeat", timeout: 10)
            let heldId = try #require(held["id"] as? String)
            let local = try await TestBackend.connect(apiPort: a.apiPort)
            try await local.subscribe(service: "s", instance: "l", lane: "", events: ["heartbeat"])
            #expect(await a.eventually { await a.relayInstances().count == 2 })
            await cluster.nats.stop()
            #expect(await a.eventually(timeout: 10) { await a.relayInstances().map { $0["instance"] as? String } == ["l"] })
            try await local.waitForEvent("heartbeat", timeout: 10) { $0["id"] as? String == heldId }
            let seen = local.events.count
            #expect(await a.eventually(timeout: 5) { local.events.count > seen + 1 }, "the local instance did not take the pile's events")
            try await cluster.nats.start()
            #expect(await a.eventually(timeout: 15) { await a.relayInstances().count == 2 })
            await pile.stop()
            await remote.close()
            await local.close()
        }
    }
}

extension AssembledGateway {
    /// A simulated pile with fast timers on this node (no billing-model request unless asked).
    func startPile(_ id: String, guns: Int = 1, _ configure: (inout SimulatedPileConfig) -> Void = { _ in }) async throws -> SimulatedPile {
        var c = SimulatedPileConfig.fast(pileID: PileID(id) ?? PileID(raw: 0), gunCount: guns)
        c.reconnect = .never
        c.requestBillingModel = false
        configure(&c)
        return try await SimulatedPile.connect(to: gateway.pilePort ?? 0, c)
    }

    /// `/v1/hub` → `instances`: this node's and (in a cluster) the other nodes' instances.
    func relayInstances() async -> [[String: Any]] {
        ((try? await http("GET", "/v1/hub"))?.json["instances"] as? [[String: Any]]) ?? []
    }
}
