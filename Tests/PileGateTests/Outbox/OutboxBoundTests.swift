import Foundation
@testable import PileGate
import PileSim
import Testing
import YKC

/// `outboxMaxEvents`: a durable service that does not ack cannot make piles fill the data
/// volume. Past the bound a bill is not committed and gets no 0x40 (the pile keeps it and
/// re-sends it), is counted and shown; once the service acks, the outbox makes room and the
/// re-sent bill is acknowledged.
@Suite("Outbox bound: outboxMaxEvents refuses bills without losing them")
struct OutboxBoundTests {
    @Test("with outboxMaxEvents 3 and a silent billing service the 4th bill gets no 0x40; after acks its re-send does")
    func fullOutboxRefusesThenRecovers() async throws {
        try await withOutbox(settings: { $0.maxEvents = 3 }) { gw, _, outbox in
            let billing = try await TestBackend.connect(apiPort: gw.apiPort, autoAck: false)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["transaction_record"])
            let id = "66010600000900"
            let pile = try await gw.pile(id, guns: 1) {
                $0.requestBillingModel = false
                // Re-sends like a real pile, and does not give up while the test waits.
                $0.billRetryInterval = .milliseconds(300)
                $0.billMaxSends = 1_000
            }
            try await pile.waitForLogin()
            let serials = (1...4).map { TradeSerial(id + "0124112312000000" + String(format: "%02d", $0))! }
            for serial in serials.prefix(3) {
                try await pile.uploadBill(bill(id, serial: serial.description))
                try await pile.waitForBillAck(serial, timeout: .seconds(3))
            }
            #expect(try await outbox.summary().full)
            try await pile.uploadBill(bill(id, serial: serials[3].description))
            // Several re-sends of the 4th bill come and go unacknowledged.
            await #expect(throws: (any Error).self) { try await pile.waitForBillAck(serials[3], timeout: .seconds(1)) }
            #expect(try await outbox.events(service: nil, after: 0, limit: 10).count == 3, "the 4th bill is not stored")
            let metrics = try await gw.http("GET", "/metrics")
            let refused = metrics.body.split(separator: "\n").first { $0.hasPrefix(#"pilegate_outbox_refused_total{reason="full"}"#) }
            #expect((refused?.split(separator: " ").last).flatMap { Int($0) }.map { $0 >= 1 } == true, "\(refused ?? "no metric")")
            let max = metrics.body.split(separator: "\n").first { $0.hasPrefix("pilegate_outbox_max_events ") }
            #expect((max?.split(separator: " ").last).flatMap { Double($0) } == 3, "\(max ?? "no metric")")
            let shown = try await gw.http("GET", "/v1/outbox")
            #expect(shown.object["maxEvents"] as? Int == 3 && shown.object["full"] as? Bool == true, "\(shown.body)")
            let counters = shown.object["counters"] as? [String: Any]
            #expect(((counters?["refusedFull"] as? [String: Any])?["transaction_record"] as? Int ?? 0) >= 1, "\(shown.body)")
            let cli = try await CLI.run(["outbox", "--api", "http://127.0.0.1:\(gw.apiPort)"])
            #expect(cli.stdout.contains("FULL"), "\(cli.stdout)")
            // The silent instance goes and one that acks takes the service's events (redelivered
            // after the 1 s redelivery timeout); delivered events make room and the pile's next
            // re-send of the 4th bill is stored and acknowledged.
            await billing.close()
            let acking = try await TestBackend.connect(apiPort: gw.apiPort)
            try await acking.subscribe(service: "billing", instance: "b2", events: ["transaction_record"])
            try await pile.waitForBillAck(serials[3], timeout: .seconds(20))
            let stored = try await outbox.events(service: nil, after: 0, limit: 10)
            #expect(stored.contains { $0.tradeSerial == serials[3].description })
            #expect(try await outbox.summary().full == false, "delivered events were compacted to make room")
            await pile.stop()
            await acking.close()
        }
    }

    @Test("outboxMaxEvents is range-checked like the other settings")
    func settingIsValidated() throws {
        var config = GatewayConfiguration()
        try config.apply(environment: ["PILEGATE_OUTBOX_MAX_EVENTS": "5"])
        #expect(config.outboxMaxEvents == 5)
        #expect(throws: ConfigurationError.self) { try config.apply(environment: ["PILEGATE_OUTBOX_MAX_EVENTS": "0"]) }
        #expect(throws: ConfigurationError.self) { try config.apply(environment: ["PILEGATE_OUTBOX_MAX_EVENTS": "many"]) }
    }
}
