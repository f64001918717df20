import Foundation
@testable import PileGate
import PileSim
import Testing
import YKC

extension ReliabilityTests {
    /// Which services the outbox keeps events for: durable subscribers only, not one-time
    /// subscribers such as `pilegate tail`; a service gone longer than the retention is forgotten;
    /// an operator can forget one (API and CLI).
    @Suite("Outbox services: durable only, retention, forget")
    struct OutboxServiceTests {
        /// Uploads one bill from a fresh pile and waits for its 0x40.
        static func oneBill(_ gw: TestGateway, pile id: String) async throws -> TradeSerial {
            let pile = try await gw.pile(id, guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            let serial = TradeSerial(id + "01241123120000000" + "1")!
            try await pile.uploadBill(bill(id, serial: serial.description))
            try await pile.waitForBillAck(serial, timeout: .seconds(3))
            await pile.stop()
            return serial
        }

        @Test("a non-durable subscriber sees bills live but pins nothing: what the durable service acked is compacted")
        func nonDurableDoesNotPin() async throws {
            try await withOutbox { gw, _, outbox in
                let billing = try await TestBackend.connect(apiPort: gw.apiPort)
                try await billing.subscribe(service: "billing", instance: "b1", events: ["transaction_record"])
                let watcher = try await TestBackend.connect(apiPort: gw.apiPort, autoAck: false)
                watcher.send(#"{"type":"subscribe","service":"watch","instance":"w1","events":["*"],"durable":false}"#)
                let confirmed = try await watcher.waitFor("subscribed") { $0["type"] as? String == "subscribed" }
                #expect(confirmed["durable"] as? Bool == false)
                let serial = try await Self.oneBill(gw, pile: "66010600000500")
                // Live, once, to the watcher; through the outbox to billing.
                try await watcher.waitForEvent("transaction_record") { ($0["data"] as? [String: Any])?["tradeSerial"] as? String == serial.description }
                try await billing.waitForEvent("transaction_record")
                await watcher.close()
                #expect(try await outbox.summary().services.keys.sorted() == ["billing"])
                #expect(await gw.eventually { (try? await outbox.summary().pending["billing"]?["transaction_record"]) == nil })
                #expect(try await outbox.compact(now: Date().addingTimeInterval(86_400)) == 1, "the watcher never acked, yet it pins nothing")
                await billing.close()
            }
        }

        @Test("running pilegate tail once does not make a permanent outbox service")
        func tailOnce() async throws {
            try await withOutbox { gw, _, outbox in
                let api = "http://127.0.0.1:\(gw.apiPort)"
                let tail = try await CLI.run(["tail", "--api", api, "--events", "transaction_record", "--duration", "0.5"])
                #expect(tail.status == 0, "\(tail.stderr)")
                #expect(tail.stderr.contains(#""durable":false"#), "\(tail.stderr)")
                #expect(try await outbox.summary().services.isEmpty)
                let durable = try await CLI.run(["tail", "--api", api, "--service", "keep", "--events", "transaction_record", "--durable", "--duration", "0.5"])
                #expect(durable.status == 0, "\(durable.stderr)")
                #expect(try await outbox.summary().services.keys.sorted() == ["keep"])
            }
        }

        @Test("DELETE /v1/outbox/services/{service} and pilegate outbox forget: the service stops pinning events")
        func forget() async throws {
            try await withOutbox { gw, _, outbox in
                let old = try await TestBackend.connect(apiPort: gw.apiPort)
                try await old.subscribe(service: "old", instance: "o1", events: ["transaction_record"])
                let billing = try await TestBackend.connect(apiPort: gw.apiPort)
                try await billing.subscribe(service: "billing", instance: "b1", events: ["transaction_record"])
                // Connected: refused, it would be known again at once.
                let busy = try await gw.http("DELETE", "/v1/outbox/services/old")
                #expect(busy.status == 409)
                #expect(busy.object["error"] as? String == "service_connected")
                await old.close()
                _ = try await Self.oneBill(gw, pile: "66010600000501")
                try await billing.waitForEvent("transaction_record")
                #expect(await gw.eventually { (try? await outbox.summary().pending["billing"]?["transaction_record"]) == nil })
                #expect(try await outbox.compact(now: Date().addingTimeInterval(86_400)) == 0, "pinned by the absent service")
                let forgotten = try await gw.http("DELETE", "/v1/outbox/services/old")
                #expect(forgotten.status == 200, "\(forgotten.body)")
                #expect(forgotten.object["forgotten"] as? String == "old")
                #expect(try await outbox.summary().services.keys.sorted() == ["billing"])
                #expect(try await outbox.compact(now: Date().addingTimeInterval(86_400)) == 1)
                let unknown = try await gw.http("DELETE", "/v1/outbox/services/old")
                #expect(unknown.status == 404)
                // The CLI verb, against another absent service.
                let other = try await TestBackend.connect(apiPort: gw.apiPort)
                try await other.subscribe(service: "audit", instance: "a1", events: ["*"])
                await other.close()
                #expect(await gw.eventually { (try? await gw.http("DELETE", "/v1/outbox/services/nobody").status) == 404 })
                let cli = try await CLI.run(["outbox", "forget", "audit", "--api", "http://127.0.0.1:\(gw.apiPort)"])
                #expect(cli.status == 0, "\(cli.stderr)")
                #expect(cli.stdout.contains("forgot outbox service audit"), "\(cli.stdout)")
                let again = try await CLI.run(["outbox", "forget", "audit", "--api", "http://127.0.0.1:\(gw.apiPort)"])
                #expect(again.status == 1)
                #expect(again.stderr.contains("'audit'"), "\(again.stderr)")
                await billing.close()
            }
        }

        @Test("a service absent longer than the retention is forgotten, also after a restart")
        func retention() async throws {
            let dir = NSTemporaryDirectory() + "pilegate-retention-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try await withOutbox(dataDirectory: dir, settings: { $0.serviceRetention = 1 }) { gw, _, outbox in
                let gone = try await TestBackend.connect(apiPort: gw.apiPort)
                try await gone.subscribe(service: "gone", instance: "g1", events: ["transaction_record"])
                let stays = try await TestBackend.connect(apiPort: gw.apiPort)
                try await stays.subscribe(service: "stays", instance: "s1", events: ["transaction_record"])
                await gone.close()
                #expect(try await outbox.forgetAbsentServices().isEmpty, "within the retention")
                try await Task.sleep(nanoseconds: 1_200_000_000)
                // Connected services are never forgotten, however long ago they subscribed.
                #expect(try await outbox.forgetAbsentServices() == ["gone"])
                await stays.close()
            }
            // "stays" left at the end of the run; its last sighting survives the restart.
            try await withOutbox(dataDirectory: dir, settings: { $0.serviceRetention = 60 }) { _, _, outbox in
                let known = try await outbox.summary().services.keys.sorted()
                #expect(known == ["stays"])
                let soon = try await outbox.forgetAbsentServices()
                #expect(soon.isEmpty, "seen at the end of the last run")
                let later = try await outbox.forgetAbsentServices(now: Date().addingTimeInterval(120))
                #expect(later == ["stays"])
            }
        }
    }
}
