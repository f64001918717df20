import Foundation
import NIOCore
@testable import PileGate
import PileSim
import Testing
import YKC

/// Piles whose id starts with 3201 go to lane "gray".
let grayByPrefix: @Sendable (Login, String) -> String = { login, _ in login.pileId.description.hasPrefix("3201") ? "gray" : "" }

import Logging

@Suite("Backend hub: events, lanes, replies, commands")
struct BackendHubTests {
    @Test("a subscribed backend receives pile_online and frame events with the full envelope")
    func eventsEnvelope() async throws {
        try await withHub { gw, _ in
            let backend = try await TestBackend.connect(apiPort: gw.apiPort)
            try await backend.subscribe(service: "monitor", instance: "m1", events: ["pile_online", "heartbeat", "pile_offline"])
            let pile = try await gw.pile("55010600000001") { $0.requestBillingModel = false }
            let online = try await backend.waitForEvent("pile_online")
            #expect(online["pile"] as? String == "55010600000001")
            #expect(online["lane"] as? String == "")
            #expect(online["node"] as? String == "test-node")
            #expect(online["code"] as? Int == 1)
            #expect((online["id"] as? String)?.isEmpty == false)
            #expect((online["receivedAt"] as? String)?.contains("T") == true)
            let login = (online["data"] as? [String: Any])?["login"] as? [String: Any]
            #expect(login?["gunCount"] as? Int == 2)
            let hb = try await backend.waitForEvent("heartbeat")
            #expect(hb["code"] as? Int == 3)
            #expect([1, 2].contains(hb["gun"] as? Int ?? 0))
            #expect(hb["replyExpected"] as? Bool == false)
            #expect((hb["data"] as? [String: Any])?["gunState"] as? String == "normal")
            await pile.stop()
            let offline = try await backend.waitForEvent("pile_offline")
            #expect((offline["data"] as? [String: Any])?["reason"] as? String == "closed_by_pile")
            await backend.close()
        }
    }

    @Test("lane sessions reach the lane's instance, base sessions never do; fallback to base and back")
    func laneRoutingAndFallback() async throws {
        try await withHub(lanes: grayByPrefix) { gw, hub in
            let base = try await TestBackend.connect(apiPort: gw.apiPort)
            try await base.subscribe(service: "billing", instance: "b0", events: ["heartbeat"])
            var gray: TestBackend? = try await TestBackend.connect(apiPort: gw.apiPort)
            try await gray?.subscribe(service: "billing", instance: "g1", lane: "gray", events: ["heartbeat"])
            let grayPile = try await gw.pile("32010600000001") { $0.requestBillingModel = false }
            let basePile = try await gw.pile("55010600000002") { $0.requestBillingModel = false }
            try await gray?.waitForEvent("heartbeat") { $0["pile"] as? String == "32010600000001" && $0["lane"] as? String == "gray" }
            try await base.waitForEvent("heartbeat") { $0["pile"] as? String == "55010600000002" }
            try await Task.sleep(nanoseconds: 500_000_000)
            #expect(!(gray?.events.contains { $0["pile"] as? String == "55010600000002" } ?? true), "base leaked into the lane")
            #expect(!base.events.contains { $0["pile"] as? String == "32010600000001" }, "lane traffic went to base while the lane was healthy")
            // The lane's only instance goes away: its pile falls back to base, counted.
            await gray?.close()
            gray = nil
            try await base.waitForEvent("heartbeat", timeout: 5) { $0["pile"] as? String == "32010600000001" && $0["lane"] as? String == "gray" }
            #expect((hub.statsDocument().lanes["gray"]?["billing"]?.fallbacks ?? 0) > 0)
            // It comes back: lane traffic returns to it.
            let again = try await TestBackend.connect(apiPort: gw.apiPort)
            try await again.subscribe(service: "billing", instance: "g2", lane: "gray", events: ["heartbeat"])
            try await again.waitForEvent("heartbeat") { $0["pile"] as? String == "32010600000001" }
            await again.close()
            await base.close()
            await grayPile.stop()
            await basePile.stop()
        }
    }

    @Test("one pile's events stay on one instance, in order; piles spread over instances")
    func stickyOrdering() async throws {
        try await withHub { gw, _ in
            let a = try await TestBackend.connect(apiPort: gw.apiPort)
            let b = try await TestBackend.connect(apiPort: gw.apiPort)
            try await a.subscribe(service: "orders", instance: "a", events: ["heartbeat"])
            try await b.subscribe(service: "orders", instance: "b", events: ["heartbeat"])
            var piles: [SimulatedPile] = []
            for i in 0..<12 {
                piles.append(try await gw.pile(String(55_010_600_000_100 + i), guns: 1) { $0.requestBillingModel = false })
            }
            try await Task.sleep(nanoseconds: 1_500_000_000)
            let onA = Set(a.events.compactMap { $0["pile"] as? String })
            let onB = Set(b.events.compactMap { $0["pile"] as? String })
            #expect(onA.isDisjoint(with: onB), "a pile's events were split across instances")
            #expect(!onA.isEmpty && !onB.isEmpty, "all piles went to one instance")
            #expect(onA.count + onB.count == 12)
            for backend in [a, b] {
                var lastSeq: [String: Int] = [:]
                for e in backend.events {
                    guard let pile = e["pile"] as? String, let id = e["id"] as? String, let n = Int(id.split(separator: "-").last ?? "") else { continue }
                    #expect(n > lastSeq[pile, default: 0], "out of order for \(pile)")
                    lastSeq[pile] = n
                }
            }
            for p in piles { await p.stop() }
            await a.close()
            await b.close()
        }
    }

    @Test("a draining instance gets no new events; the other takes over")
    func drain() async throws {
        try await withHub { gw, hub in
            let a = try await TestBackend.connect(apiPort: gw.apiPort)
            let b = try await TestBackend.connect(apiPort: gw.apiPort)
            try await a.subscribe(service: "s", instance: "a", events: ["heartbeat"])
            try await b.subscribe(service: "s", instance: "b", events: ["heartbeat"])
            a.send(#"{"type":"drain"}"#)
            try await a.waitFor("draining") { $0["type"] as? String == "draining" }
            let countBefore = a.events.count
            let pile = try await gw.pile("55010600000200") { $0.requestBillingModel = false }
            try await b.waitForEvent("heartbeat") { $0["pile"] as? String == "55010600000200" }
            try await Task.sleep(nanoseconds: 400_000_000)
            #expect(a.events.count == countBefore)
            #expect(hub.statsDocument().instances.first { $0.instance == "a" }?.state == "draining")
            await pile.stop()
            await a.close()
            await b.close()
        }
    }

    @Test("an instance that does not ack is ejected and its events go to another instance")
    func ejection() async throws {
        try await withHub(hub: {
            $0.ackTimeout = 0.3
            $0.failuresToEject = 1
            $0.baseEjection = 30
        }) { gw, hub in
            let silent = try await TestBackend.connect(apiPort: gw.apiPort, autoAck: false)
            try await silent.subscribe(service: "s", instance: "silent", events: ["heartbeat"])
            let pile = try await gw.pile("55010600000300", guns: 1) { $0.requestBillingModel = false }
            try await silent.waitForEvent("heartbeat")
            let ejected = await gw.eventually(timeout: 3) { hub.statsDocument().instances.first { $0.instance == "silent" }?.state == "ejected" }
            #expect(ejected)
            let healthy = try await TestBackend.connect(apiPort: gw.apiPort)
            try await healthy.subscribe(service: "s", instance: "healthy", events: ["heartbeat"])
            try await healthy.waitForEvent("heartbeat", timeout: 5) { $0["pile"] as? String == "55010600000300" }
            let countAtSilent = silent.events.count
            try await Task.sleep(nanoseconds: 400_000_000)
            #expect(silent.events.count == countAtSilent, "an ejected instance still got new work")
            let status = hub.statsDocument().instances.first { $0.instance == "silent" }
            #expect(status?.state == "ejected")
            #expect((status?.ejections ?? 0) >= 1)
            #expect((hub.statsDocument().lanes[""]?["s"]?.ejections ?? 0) >= 1)
            await pile.stop()
            await silent.close()
            await healthy.close()
        }
    }

    @Test("a slow instance among fast peers is ejected; when every instance is slow, none is")
    func slowOutlier() async throws {
        try await withHub(hub: {
            $0.latencyBound = 0.1
            $0.failuresToEject = 2
            $0.baseEjection = 30
        }) { gw, hub in
            // The same piles and instance names as the stickiness test: both instances get piles.
            let a = try await TestBackend.connect(apiPort: gw.apiPort)
            let b = try await TestBackend.connect(apiPort: gw.apiPort, ackDelay: 0.3)
            try await a.subscribe(service: "orders", instance: "a", events: ["heartbeat"])
            try await b.subscribe(service: "orders", instance: "b", events: ["heartbeat"])
            var piles: [SimulatedPile] = []
            for i in 0..<12 {
                piles.append(try await gw.pile(String(55_010_600_000_100 + i), guns: 1) { $0.requestBillingModel = false })
            }
            let ejected = await gw.eventually(timeout: 8) { hub.statsDocument().instances.first { $0.instance == "b" }?.state == "ejected" }
            #expect(ejected, "the slow instance was not ejected while a fast peer could take its piles")
            #expect(hub.statsDocument().instances.first { $0.instance == "a" }?.state == "healthy")
            // Now both are slow: acks over the bound are not failures, nobody is ejected.
            a.ackDelay.withLockedValue { $0 = 0.3 }
            let c = try await TestBackend.connect(apiPort: gw.apiPort, ackDelay: 0.3)
            try await c.subscribe(service: "other", instance: "c1", events: ["heartbeat"])
            let d = try await TestBackend.connect(apiPort: gw.apiPort, ackDelay: 0.3)
            try await d.subscribe(service: "other", instance: "c2", events: ["heartbeat"])
            _ = await gw.eventually(timeout: 8) { (hub.statsDocument().lanes[""]?["other"]?.acks ?? 0) >= 10 }
            let other = hub.statsDocument().lanes[""]?["other"]
            #expect((other?.acks ?? 0) >= 10)
            #expect(other?.failures == 0, "uniformly slow acks counted as failures")
            #expect(other?.ejections == 0)
            for name in ["c1", "c2"] {
                #expect(hub.statsDocument().instances.first { $0.instance == name }?.state == "healthy", "\(name)")
            }
            for p in piles { await p.stop() }
            for backend in [a, b, c, d] { await backend.close() }
        }
    }

    @Test("a new instance warms up: its share of piles rises with its weight")
    func warmupShare() async throws {
        var logger = Logger(label: "t")
        logger.logLevel = .critical
        let old = BackendInstance(id: 1, service: "s", name: "old", lane: "", events: nil, maxInFlight: 10)
        let new = BackendInstance(id: 2, service: "s", name: "new", lane: "", events: nil, maxInFlight: 10)
        func share(at now: Date, warmup: TimeInterval) -> Double {
            var newCount = 0
            for i in 0..<4000 {
                let pick = BackendRouter(warmup: warmup).choose(
                    pile: 32_010_600_000_000 + UInt64(i), lane: "", among: [old, new], now: now, candidate: { $0.routeCandidate })
                if pick?.instance === new { newCount += 1 }
            }
            return Double(newCount) / 4000
        }
        // Both joined "now"; at 10% of the window both weigh 0.1 → even split. Compare with an
        // old instance fully warm (window 0 → weight 1) against the new one at 10%.
        let early = share(at: new.joinedAt.addingTimeInterval(10), warmup: 100)
        #expect(abs(early - 0.5) < 0.05)
        // Weighted rendezvous gives share w_new / (w_old + w_new).
        let w = BackendInstance(id: 3, service: "s", name: "w", lane: "", events: nil, maxInFlight: 10)
        var newShare = 0
        for i in 0..<4000 {
            let scoreOld = BackendRouter.score(pile: UInt64(i), seed: BackendRouter.seed(service: "s", name: "old"), weight: 1)
            let scoreNew = BackendRouter.score(pile: UInt64(i), seed: BackendRouter.seed(service: "s", name: "w"), weight: 0.2)
            if scoreNew > scoreOld { newShare += 1 }
        }
        _ = w
        let frac = Double(newShare) / 4000
        #expect(frac > 0.12 && frac < 0.22, "share \(frac) for weight 0.2 vs 1.0")
        // And the weight itself rises linearly over the window.
        #expect(abs(new.weight(now: new.joinedAt.addingTimeInterval(25), warmup: 100) - 0.25) < 0.001)
        #expect(new.weight(now: new.joinedAt.addingTimeInterval(200), warmup: 100) == 1)
    }

    @Test("billing model request: the backend's reply reaches the pile; in an outage the cached model answers")
    func billingModelReplyAndCachedFallback() async throws {
        try await withHub { gw, _ in
            let billing = try await TestBackend.connect(apiPort: gw.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["billing_model_request", "billing_model_verify"])
            let pile = try await gw.pile("55010600000400", guns: 1)
            let request = try await billing.waitForEvent("billing_model_request")
            #expect(request["replyExpected"] as? Bool == true)
            let id = request["id"] as? String ?? ""
            let periods = (0..<48).map { $0 < 16 ? "\"valley\"" : "\"flat\"" }.joined(separator: ",")
            billing.send(#"""
                {"type":"reply","id":"\#(id)","data":{"billingModel":"0001","sharpEnergyPrice":1.2,"sharpServiceFee":0.4,"peakEnergyPrice":1.0,"peakServiceFee":0.4,"flatEnergyPrice":0.8,"flatServiceFee":0.4,"valleyEnergyPrice":0.89,"valleyServiceFee":0.4,"lossRatio":0,"periods":[\#(periods)]}}
                """#)
            let state = try await pile.waitUntil(timeout: .seconds(3), "model") { $0.billingModel != nil }
            #expect(state.billingModel?.valleyEnergyPrice == YKCDecimal("0.89"))
            #expect(state.billingModel?.periods.first == .valley)
            await pile.stop()
            // Backend gone: the gateway answers from its cache.
            await billing.close()
            try await Task.sleep(nanoseconds: 200_000_000)
            let again = try await gw.pile("55010600000400", guns: 1)
            let s2 = try await again.waitUntil(timeout: .seconds(3), "cached model") { $0.billingModel != nil }
            #expect(s2.billingModel?.billingModel.description == "0001")
            #expect(s2.billingModel?.valleyEnergyPrice == YKCDecimal("0.89"))
            // 0x05 verification is answered from the cache too.
            _ = try await again.send(BillingModelVerify(pileId: PileID("55010600000400")!, billingModel: "0001"))
            let verify = try await again.waitForFrame(code: 0x06)
            if case .billingModelVerifyReply(let r) = YKCMessage.decode(verify) { #expect(r.result == .same) } else { Issue.record("no 0x06") }
            await again.stop()
        }
    }

    @Test("a card start request without any backend is refused with a reason")
    func startRequestFallback() async throws {
        try await withHub { gw, _ in
            let pile = try await gw.pile("55010600000500", guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            let reply = try await pile.requestCardStart(gun: 1, card: BinaryID(raw: 0xD14B_0A54), timeout: .seconds(3))
            #expect(reply.authResult == .failed)
            #expect(reply.failureReason == .pileDisabled)
            await pile.stop()
        }
    }

    @Test("commands reach the pile and return its decoded reply; errors are clear and quick")
    func commands() async throws {
        try await withHub(lanes: grayByPrefix) { gw, _ in
            let ops = try await TestBackend.connect(apiPort: gw.apiPort)
            try await ops.subscribe(service: "ops", instance: "o1", events: ["pile_online"])
            let pile = try await gw.pile("55010600000600", guns: 2) {
                $0.requestBillingModel = false
                $0.ignoredCommandCodes = [0x52]
            }
            try await pile.waitForLogin()
            ops.send(#"{"type":"command","requestId":"r1","pile":"55010600000600","command":"remote_start","args":{"gun":1,"tradeSerial":"55010600000600012411231200000001","logicalCardNumber":"0000001000000573","physicalCardNumber":"00000000D14B0A54","balance":100.5}}"#)
            let r1 = try await ops.waitFor("result r1") { $0["requestId"] as? String == "r1" }
            #expect(r1["ok"] as? Bool == true)
            let reply = r1["reply"] as? [String: Any]
            #expect(reply?["event"] as? String == "remote_start_reply")
            #expect((reply?["data"] as? [String: Any])?["result"] as? String == "started")
            // Over HTTP.
            let http = try await gw.http("POST", "/v1/piles/55010600000600/commands/reboot", body: #"{"when":"immediately"}"#)
            #expect(http.status == 200)
            #expect(((http.object["reply"] as? [String: Any])?["data"] as? [String: Any])?["result"] as? String == "succeeded")
            // Offline pile, invalid args, unknown command, timeout.
            ops.send(#"{"type":"command","requestId":"r2","pile":"11110600000000","command":"reboot","args":{"when":1}}"#)
            #expect(try await ops.waitFor("r2") { $0["requestId"] as? String == "r2" }["error"] as? String == "pile_offline")
            ops.send(#"{"type":"command","requestId":"r3","pile":"55010600000600","command":"reboot","args":{"when":"later"}}"#)
            let r3 = try await ops.waitFor("r3") { $0["requestId"] as? String == "r3" }
            #expect(r3["error"] as? String == "invalid_args")
            #expect((r3["message"] as? String)?.contains("when") == true)
            ops.send(#"{"type":"command","requestId":"r4","pile":"55010600000600","command":"explode"}"#)
            #expect(try await ops.waitFor("r4") { $0["requestId"] as? String == "r4" }["error"] as? String == "unknown_command")
            let started = Date()
            ops.send(#"{"type":"command","requestId":"r5","pile":"55010600000600","command":"work_params","args":{"workMode":"enabled","maxOutputPercent":80},"timeout":0.5}"#)
            #expect(try await ops.waitFor("r5") { $0["requestId"] as? String == "r5" }["error"] as? String == "timeout")
            #expect(Date().timeIntervalSince(started) < 2)
            #expect(try await gw.http("POST", "/v1/piles/11110600000000/commands/reboot", body: #"{"when":1}"#).status == 404)
            #expect(try await gw.http("POST", "/v1/piles/55010600000600/commands/reboot", body: "{bad").status == 400)
            await pile.stop()
            await ops.close()
        }
    }

    @Test("a lane instance may not command a pile of another lane; base instances may")
    func commandLaneCheck() async throws {
        try await withHub(lanes: grayByPrefix) { gw, _ in
            let grayOps = try await TestBackend.connect(apiPort: gw.apiPort)
            try await grayOps.subscribe(service: "ops", instance: "g", lane: "gray", events: ["pile_online"])
            let pile = try await gw.pile("55010600000700", guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            grayOps.send(#"{"type":"command","requestId":"x","pile":"55010600000700","command":"reboot","args":{"when":1}}"#)
            #expect(try await grayOps.waitFor("x") { $0["requestId"] as? String == "x" }["error"] as? String == "lane_mismatch")
            await pile.stop()
            await grayOps.close()
        }
    }

    @Test("malformed messages get an error naming the problem; the socket keeps working")
    func malformedMessages() async throws {
        try await withHub { gw, _ in
            let b = try await TestBackend.connect(apiPort: gw.apiPort)
            b.send("not json")
            try await b.waitFor("malformed_json") { $0["error"] as? String == "malformed_json" }
            b.send("[1,2]")
            try await b.waitFor("malformed_message") { $0["error"] as? String == "malformed_message" }
            b.send(#"{"type":"ack","id":"x"}"#)
            try await b.waitFor("not_subscribed") { $0["error"] as? String == "not_subscribed" }
            b.send(#"{"type":"subscribe","service":"s","instance":"i","events":["no_such_event"]}"#)
            let bad = try await b.waitFor("invalid_subscription") { $0["error"] as? String == "invalid_subscription" }
            #expect((bad["message"] as? String)?.contains("no_such_event") == true)
            b.send(#"{"type":"subscribe","service":"s","instance":"i","events":["*"],"maxInFlight":0}"#)
            try await b.waitFor("maxInFlight") { ($0["message"] as? String)?.contains("maxInFlight") == true }
            b.send(#"{"type":"frobnicate"}"#)
            try await b.waitFor("unknown_type") { $0["error"] as? String == "unknown_type" }
            try await b.subscribe(service: "s", instance: "i", events: ["pile_online"])
            b.send(#"{"type":"subscribe","service":"s","instance":"i","events":["*"]}"#)
            try await b.waitFor("already_subscribed") { $0["error"] as? String == "already_subscribed" }
            b.send(#"{"type":"ack","id":"nope"}"#)
            try await b.waitFor("unknown_id") { $0["error"] as? String == "unknown_id" }
            let pile = try await gw.pile("55010600000800", guns: 1) { $0.requestBillingModel = false }
            try await b.waitForEvent("pile_online")
            await pile.stop()
            await b.close()
        }
    }

    @Test("a changed lane rule reaches an idle session at its next frame, a charging one only after its bill")
    func laneChangeWaitsForIdle() async throws {
        try await withHub { gw, hub in
            let idle = try await gw.pile("55010600001000", guns: 1) { $0.requestBillingModel = false }
            let charging = try await gw.pile("55010600001001", guns: 1) { $0.requestBillingModel = false }
            try await idle.waitForLogin()
            try await charging.waitForLogin()
            let start = await hub.runCommand(
                pile: "55010600001001", command: "remote_start",
                args: .object([
                    "gun": .number(1), "tradeSerial": .string("55010600001001012411231200000001"),
                    "logicalCardNumber": .string("1"), "physicalCardNumber": .string("1"), "balance": .number(100),
                ]), senderLane: "", timeout: .number(3))
            guard case .success = start else { Issue.record("remote start failed: \(start)"); return }
            try await charging.waitUntil(timeout: .seconds(3), "charging") { $0.gun(1)?.isCharging == true }
            try await Task.sleep(nanoseconds: 300_000_000)
            // Every pile now belongs in "gray".
            hub.decideLanes(with: { _, _ in "gray" }, version: { 1 })
            let lane: @Sendable (String) -> String = { gw.gateway.directory.session(for: PileID($0)!)?.info.lane ?? "?" }
            #expect(await gw.eventually(timeout: 3) { lane("55010600001000") == "gray" })
            try await Task.sleep(nanoseconds: 500_000_000)
            #expect(lane("55010600001001") == "", "a session changed lane during a transaction")
            let stop = await hub.runCommand(pile: "55010600001001", command: "remote_stop", args: .object(["gun": .number(1)]), senderLane: "", timeout: .number(3))
            guard case .success = stop else { Issue.record("remote stop failed: \(stop)"); return }
            #expect(await gw.eventually(timeout: 3) { lane("55010600001001") == "gray" })
            await idle.stop()
            await charging.stop()
        }
    }
}
