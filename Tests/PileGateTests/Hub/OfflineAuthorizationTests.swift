import Foundation
import Logging
import NIOPosix
import NIOCore
@testable import PileGate
import PileSim
import Testing
import YKC

/// Charging through a backend outage (issue 13.1), over real sockets: a billing backend decides
/// card starts, goes away, and the gateway decides by its offline policy; the backend, back,
/// receives every offline authorization from the outbox and the bills marked as such.
@Suite("Offline authorization: starts through a backend outage")
struct OfflineAuthorizationTests {
    static let cardA = BinaryID(raw: 0xD14B_0A54)
    static let cardAllowed = BinaryID(raw: 0xAABB_CCDD)
    static let cardUnknown = BinaryID(raw: 0x1234_5678)
    static let cardRefused = BinaryID(raw: 0x0BAD_CAFE)
    static let vinAllowed = "LSVAU2180N2183294"

    static func offlinePolicy(_ c: inout GatewayConfiguration) {
        c.offlineAuthorization = .recentOrAllowList
        c.offlineAuthorizationMaxAmount = 50
        c.offlineAuthorizationWindow = 3600
        c.offlineAuthorizationAllowList = [Self.cardAllowed.description, Self.vinAllowed]
    }

    /// Answers the next start request the backend receives for `card` with an approval or a refusal.
    static func answerStart(_ backend: TestBackend, card: BinaryID, approve: Bool, balance: Double = 120.5) async throws {
        let request = try await backend.waitForEvent("start_request") {
            ($0["data"] as? [String: Any])?["cardNumber"] as? String == card.description
        }
        let id = try #require(request["id"] as? String)
        #expect(request["replyExpected"] as? Bool == true)
        let serial = "55010600000700" + "01" + "241130235900" + "0001"
        let data =
            approve
            ? #"{"tradeSerial":"\#(serial)","logicalCardNumber":"0000001000000573","balance":\#(balance),"authResult":"succeeded","failureReason":"none"}"#
            : #"{"tradeSerial":"0","logicalCardNumber":"0000000000000000","balance":0,"authResult":"failed","failureReason":"account_frozen"}"#
        backend.send(#"{"type":"reply","id":"\#(id)","data":\#(data)}"#)
    }

    @Test("outage: a recently approved card and allow-listed card and VIN start with the cap, an unknown card is refused; the backend gets the authorizations and the marked bill when it returns")
    func outageAndRecovery() async throws {
        try await withHub(Self.offlinePolicy) { gw, hub in
            let billing = try await TestBackend.connect(apiPort: gw.apiPort)
            try await billing.subscribe(
                service: "billing", instance: "b1", events: ["start_request", "offline_authorization", "transaction_record"])
            let pile = try await gw.pile("55010600000700", guns: 4) { $0.requestBillingModel = false }
            try await pile.waitForLogin()

            // Online: the backend approves card A (and the gateway caches its decision).
            async let online = pile.requestCardStart(gun: 1, card: Self.cardA, timeout: .seconds(5))
            try await Self.answerStart(billing, card: Self.cardA, approve: true)
            let approved = try await online
            #expect(approved.authResult == .succeeded)
            #expect(approved.tradeSerial.description == "55010600000700012411302359000001")
            #expect(await gw.eventually { hub.offlineAuthorizer?.cache.count == 1 })

            // Outage: the billing backend goes away.
            await billing.close()
            #expect(await gw.eventually { hub.statsDocument().instances.isEmpty })

            // Card A again, on gun 2: approved by the gateway, capped at 50.00 (< the 120.50 balance).
            let offline = try await pile.requestCardStart(gun: 2, card: Self.cardA, timeout: .seconds(5))
            #expect(offline.authResult == .succeeded)
            #expect(offline.balance == YKCDecimal(units: 5000, scale: 2))
            #expect(offline.logicalCardNumber.description == "0000001000000573")
            #expect(offline.tradeSerial.description.hasPrefix("5501060000070002"))
            #expect(offline.tradeSerial.description.count == 32)

            // An unknown card is refused, as without the policy.
            let unknown = try await pile.requestCardStart(gun: 3, card: Self.cardUnknown, timeout: .seconds(5))
            #expect(unknown.authResult == .failed)
            #expect(unknown.failureReason == .pileDisabled)

            // An allow-listed card is approved with the cap.
            let allowed = try await pile.requestCardStart(gun: 3, card: Self.cardAllowed, timeout: .seconds(5))
            #expect(allowed.authResult == .succeeded)
            #expect(allowed.balance == YKCDecimal(units: 5000, scale: 2))

            // An allow-listed VIN (start method 3) is approved too.
            await pile.clearReceivedFrames()
            try await pile.send(
                StartRequest(
                    pileId: PileID("55010600000700")!, gun: 4, startMethod: .vin, passwordRequired: .no, cardNumber: .zero,
                    password: HexBytes(zeros: 16), vin: Self.vinAllowed))
            var body = try await pile.waitForFrame(code: 0x32).body
            let vinReply = try StartRequestReply(decoding: &body)
            #expect(vinReply.authResult == .succeeded)
            #expect(vinReply.gun == 4)

            // The offline session of card A ends; its bill is acknowledged (committed) meanwhile.
            let billSerial = try #require(try await pile.stopCharging(gun: 2))
            #expect(billSerial == offline.tradeSerial)
            try await pile.waitForBillAck(billSerial)

            let counts = try #require(hub.offlineAuthorizer?.countsSnapshot)
            #expect(counts.approved == ["recent": 1, "allow_list": 2])
            #expect(counts.refused == ["unknown": 1])
            let metrics = try await gw.http("GET", "/metrics").body
            let lines = metrics.split(separator: "\n").filter { $0.hasPrefix("pilegate_offline_authorizations_total") }
            #expect(lines.contains { $0.contains(#"result="approved""#) && $0.contains(#"reason="allow_list""#) && $0.hasSuffix(" 2") })
            #expect(lines.contains { $0.contains(#"result="refused""#) && $0.contains(#"reason="unknown""#) && $0.hasSuffix(" 1") })

            // The backend returns: the outbox delivers each offline authorization once, and the bill
            // of the offline session says so.
            let back = try await TestBackend.connect(apiPort: gw.apiPort)
            try await back.subscribe(service: "billing", instance: "b2", events: ["start_request", "offline_authorization", "transaction_record"])
            let event = try await back.waitForEvent("offline_authorization", timeout: 10) {
                ($0["data"] as? [String: Any])?["tradeSerial"] as? String == offline.tradeSerial.description
            }
            let data = try #require(event["data"] as? [String: Any])
            #expect(event["pile"] as? String == "55010600000700")
            #expect(event["gun"] as? Int == 2)
            #expect(data["reason"] as? String == "recent")
            #expect(data["startMethod"] as? String == "card")
            #expect(data["credential"] as? String == Self.cardA.description)
            #expect(data["balance"] as? Double == 50)
            #expect(data["outage"] as? String == "no_backend")
            #expect(data["lastApprovedAt"] is String)
            _ = try await back.waitForEvent("offline_authorization", timeout: 10) {
                ($0["data"] as? [String: Any])?["tradeSerial"] as? String == allowed.tradeSerial.description
            }
            _ = try await back.waitForEvent("offline_authorization", timeout: 10) {
                ($0["data"] as? [String: Any])?["tradeSerial"] as? String == vinReply.tradeSerial.description
                    && ($0["data"] as? [String: Any])?["startMethod"] as? String == "vin"
            }
            let bill = try await back.waitForEvent("transaction_record", timeout: 10)
            let mark = try #require(bill["offlineAuthorization"] as? [String: Any])
            #expect(mark["eventId"] as? String == event["id"] as? String)
            #expect(mark["reason"] as? String == "recent")
            #expect(mark["cap"] as? Double == 50)
            // Acked (TestBackend acks each event): nothing stays pending for billing, and each
            // authorization came exactly once.
            #expect(
                try await gw.eventually(timeout: 10) {
                    let summary = try await hub.outbox.summary()
                    return (summary.pending["billing"]?.values.reduce(0, +) ?? 0) == 0
                })
            let received = back.events.filter { $0["event"] as? String == "offline_authorization" }
            #expect(received.count == 3)
            await back.close()
            await pile.stop()
        }
    }

    @Test("a backend that does not reply in time counts as an outage; a card it refused stays refused")
    func timeoutAndRefusal() async throws {
        try await withHub(hub: { $0.replyTimeout = 0.5 }, Self.offlinePolicy) { gw, hub in
            let billing = try await TestBackend.connect(apiPort: gw.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["start_request"])
            let pile = try await gw.pile("55010600000701", guns: 2) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            // The backend refuses the card (it is on the allow-list: the backend's word wins).
            async let refusal = pile.requestCardStart(gun: 1, card: Self.cardAllowed, timeout: .seconds(5))
            try await Self.answerStart(billing, card: Self.cardAllowed, approve: false)
            #expect(try await refusal.failureReason == .accountFrozen)
            #expect(await gw.eventually { hub.offlineAuthorizer?.cache.decision(for: OfflineCredential(card: Self.cardAllowed))?.approved == false })
            // Now the backend stays silent: after the reply timeout the policy decides.
            let silent = try await pile.requestCardStart(gun: 1, card: Self.cardAllowed, timeout: .seconds(5))
            #expect(silent.authResult == .failed)
            #expect(silent.failureReason == .pileDisabled)
            let other = try await pile.requestCardStart(gun: 2, card: BinaryID(raw: 0x00AB_CDEF_0000_0001), timeout: .seconds(5))
            #expect(other.authResult == .failed)
            #expect(hub.offlineAuthorizer?.countsSnapshot.refused == ["refused_by_backend": 1, "unknown": 1])
            await billing.close()
            await pile.stop()
        }
    }

    @Test("the decision cache survives a restart: a card approved before it starts offline after it")
    func restartSurvival() async throws {
        let directory = NSTemporaryDirectory() + "pilegate-offline-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await withHub(dataDirectory: directory, Self.offlinePolicy) { gw, hub in
            let billing = try await TestBackend.connect(apiPort: gw.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["start_request"])
            let pile = try await gw.pile("55010600000702", guns: 2) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            async let first = pile.requestCardStart(gun: 1, card: Self.cardA, timeout: .seconds(5))
            try await Self.answerStart(billing, card: Self.cardA, approve: true, balance: 20)
            #expect(try await first.authResult == .succeeded)
            async let second = pile.requestCardStart(gun: 2, card: Self.cardRefused, timeout: .seconds(5))
            try await Self.answerStart(billing, card: Self.cardRefused, approve: false)
            #expect(try await second.authResult == .failed)
            #expect(await gw.eventually { hub.offlineAuthorizer?.cache.count == 2 })
            await billing.close()
            await pile.stop()
        }
        // A new gateway on the same data, with no backend at all.
        try await withHub(dataDirectory: directory, Self.offlinePolicy) { gw, hub in
            #expect(hub.offlineAuthorizer?.cache.count == 2)
            let pile = try await gw.pile("55010600000702", guns: 2) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            let reply = try await pile.requestCardStart(gun: 1, card: Self.cardA, timeout: .seconds(5))
            #expect(reply.authResult == .succeeded)
            // The cap is the balance the backend gave (20.00), below the configured 50.00.
            #expect(reply.balance == YKCDecimal(units: 2000, scale: 2))
            let refused = try await pile.requestCardStart(gun: 2, card: Self.cardRefused, timeout: .seconds(5))
            #expect(refused.authResult == .failed)
            #expect(hub.offlineAuthorizer?.countsSnapshot.refused == ["refused_by_backend": 1])
            await pile.stop()
        }
    }

    @Test("with the policy off (the default) nothing is cached and an outage refuses every start")
    func offByDefault() async throws {
        try await withHub { gw, hub in
            let billing = try await TestBackend.connect(apiPort: gw.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["start_request"])
            let pile = try await gw.pile("55010600000703", guns: 2) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            async let online = pile.requestCardStart(gun: 1, card: Self.cardA, timeout: .seconds(5))
            try await Self.answerStart(billing, card: Self.cardA, approve: true)
            #expect(try await online.authResult == .succeeded)
            await billing.close()
            #expect(await gw.eventually { hub.statsDocument().instances.isEmpty })
            let offline = try await pile.requestCardStart(gun: 2, card: Self.cardA, timeout: .seconds(5))
            #expect(offline.authResult == .failed)
            #expect(offline.failureReason == .pileDisabled)
            #expect(hub.offlineAuthorizer?.cache.count == 0)
            #expect(hub.offlineAuthorizer?.countsSnapshot.refused == ["off": 1])
            await pile.stop()
        }
    }
}

extension OfflineAuthorizationTests {
    @Test("a configuration reload turns the policy on live: the next start no backend answers follows it")
    func reloadAppliesPolicy() async throws {
        let file = NSTemporaryDirectory() + "pilegate-offline-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: file) }
        // A directory named as TestGateway names its own, so it is removed when the gateway stops.
        let directory = NSTemporaryDirectory() + "pilegate-test-" + UUID().uuidString
        let source = { @Sendable () throws(ConfigurationError) -> GatewayConfiguration in
            var c = try GatewayConfiguration.load(file: file, environment: [:])
            c.dataDirectory = directory
            return c
        }
        try await withHub(dataDirectory: directory, configurationSource: source) { gw, hub in
            let pile = try await gw.pile("55010600000704", guns: 2) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            #expect(try await pile.requestCardStart(gun: 1, card: Self.cardAllowed, timeout: .seconds(5)).authResult == .failed)

            let settings = #"{"offlineAuthorization":"allowList","offlineAuthorizationMaxAmount":30,"offlineAuthorizationAllowList":["\#(Self.cardAllowed)"]}"#
            try Data(settings.utf8).write(to: URL(fileURLWithPath: file))
            let r = try await gw.http("POST", "/v1/config/reload")
            #expect(r.status == 200, "\(r.body)")
            let applied = r.object["applied"] as? [String] ?? []
            #expect(applied.contains("offlineAuthorization") && applied.contains("offlineAuthorizationAllowList") && applied.contains("offlineAuthorizationMaxAmount"))
            #expect(hub.offlineAuthorizer?.policy.mode == .allowList)

            let reply = try await pile.requestCardStart(gun: 1, card: Self.cardAllowed, timeout: .seconds(5))
            #expect(reply.authResult == .succeeded)
            #expect(reply.balance == YKCDecimal(units: 3000, scale: 2))

            // A reload with no cap is refused as a whole; the policy in force stays.
            try Data(#"{"offlineAuthorization":"recent"}"#.utf8).write(to: URL(fileURLWithPath: file))
            #expect(try await gw.http("POST", "/v1/config/reload").status == 422)
            #expect(hub.offlineAuthorizer?.policy.maxAmountCents == 3000)
            await pile.stop()
        }
    }

    @Test("/v1/stats of an assembled gateway shows the offline authorization counts")
    func statsSection() async throws {
        let config = AssembledGateway.config {
            $0.offlineAuthorization = .allowList
            $0.offlineAuthorizationMaxAmount = 10
            $0.offlineAuthorizationAllowList = [Self.cardAllowed.description]
        }
        try await AssembledGateway.with(config) { gw in
            var c = SimulatedPileConfig.fast(pileID: PileID("55010600000705")!, gunCount: 2)
            c.reconnect = .never
            c.requestBillingModel = false
            let pile = try await SimulatedPile.connect(to: gw.gateway.pilePort ?? 0, c)
            _ = try await pile.waitForLogin()
            #expect(try await pile.requestCardStart(gun: 1, card: Self.cardAllowed, timeout: .seconds(5)).authResult == .succeeded)
            #expect(try await pile.requestCardStart(gun: 2, card: Self.cardUnknown, timeout: .seconds(5)).authResult == .failed)
            let stats = try await gw.http("GET", "/v1/stats").json
            let section = try #require((stats["extensions"] as? [String: Any])?["offlineAuthorization"] as? [String: Any])
            #expect(section["mode"] as? String == "allowList")
            #expect((section["approved"] as? [String: Any])?["allow_list"] as? Int == 1)
            #expect((section["refused"] as? [String: Any])?["unknown"] as? Int == 1)
            #expect(section["issued"] as? Int == 1)
            await pile.stop()
        }
    }
}

extension OfflineAuthorizationTests {
    @Test("a draining backend is an outage too (unreachable); a parallel start (0xA1) is approved with its parallel serial echoed")
    func unreachableAndParallel() async throws {
        try await withHub(Self.offlinePolicy) { gw, hub in
            let billing = try await TestBackend.connect(apiPort: gw.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["start_request", "parallel_start_request"])
            let pile = try await gw.pile("55010600000706", guns: 2) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            async let online = pile.requestCardStart(gun: 1, card: Self.cardA, timeout: .seconds(5))
            try await Self.answerStart(billing, card: Self.cardA, approve: true)
            #expect(try await online.authResult == .succeeded)
            // The backend drains: subscribed still, but it takes no new event.
            billing.send(#"{"type":"drain"}"#)
            try await billing.waitFor("draining") { $0["type"] as? String == "draining" }

            await pile.clearReceivedFrames()
            let parallelSerial = try #require(BCDDigits("000000000042", byteCount: 6))
            try await pile.send(
                ParallelStartRequest(
                    pileId: PileID("55010600000706")!, gun: 2, startMethod: .card, passwordRequired: .no, cardNumber: Self.cardA,
                    password: HexBytes(zeros: 16), vin: "", gunRole: .main, parallelSerial: parallelSerial))
            var body = try await pile.waitForFrame(code: 0xA2).body
            let reply = try ParallelStartRequestReply(decoding: &body)
            #expect(reply.authResult == .succeeded)
            #expect(reply.parallelSerial == parallelSerial)
            #expect(reply.balance == YKCDecimal(units: 5000, scale: 2))

            let stored = try await hub.outbox.events(service: nil, after: 0, limit: 10).filter { $0.event == "offline_authorization" }
            #expect(stored.count == 1)
            #expect(stored.first?.tradeSerial == reply.tradeSerial.description)
            let data = stored.first?.payload.objectValue?["data"]?.objectValue
            #expect(data?["outage"]?.stringValue == "unreachable")
            #expect(data?["parallelSerial"]?.stringValue == "000000000042")
            #expect(stored.first?.payload.objectValue?["code"]?.doubleValue == 0xA1)
            await billing.close()
            await pile.stop()
        }
    }

    @Test("the outbox stores an offline authorization once per trade serial")
    func storedOncePerSerial() async throws {
        let directory = NSTemporaryDirectory() + "pilegate-offline-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var logger = Logger(label: "offline-outbox-test")
        logger.logLevel = .critical
        let outbox = try Outbox(directory: directory, logger: logger)
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        let serial = try #require(TradeSerial("55010600000700022612010810040042"))
        var results: [Outbox.AppendResult] = []
        for (n, event) in ["offline_authorization", "offline_authorization", "charging_end", "charging_end"].enumerated() {
            let promise = loop.makePromise(of: Outbox.AppendResult.self)
            outbox.append(
                OutboxEvent(
                    id: "e\(n)", event: event, code: 0x31, pile: PileID("55010600000700")!, gun: 2, lane: "", tradeSerial: serial,
                    receivedAt: Date(), payload: ByteBuffer(string: #"{"n":\#(n)}"#)),
                promise: promise)
            await outbox.commitPending()
            results.append(try await promise.futureResult.get())
        }
        #expect(results[0] != .duplicate)
        #expect(results[1] == .duplicate)
        // Other event types are not deduplicated by trade serial.
        #expect(results[2] != .duplicate && results[3] != .duplicate)
        await outbox.stop()
    }
}
