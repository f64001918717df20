import Foundation
import GRDB
import Logging
import NIOCore
@testable import PileGate
import PileSim
import Testing
import YKC

/// A gateway with the hub and the durable outbox, as `pilegate serve` runs it.
func withOutbox(
    dataDirectory: String? = nil,
    settings configureOutbox: (inout Outbox.Settings) -> Void = { _ in },
    _ configure: (inout GatewayConfiguration) -> Void = { _ in },
    _ body: (TestGateway, BackendHub, Outbox) async throws -> Void
) async throws {
    try await withHub(dataDirectory: dataDirectory, hub: { $0.ackTimeout = 1 }, outbox: configureOutbox, configure) { gw, hub in
        try await body(gw, hub, hub.outbox)
    }
}

func bill(_ pile: String, serial: String, gun: Int = 1, kWh: String = "3.0067") -> TransactionRecord {
    .simulated(pileID: PileID(pile)!, gun: GunNumber(number: gun)!, tradeSerial: TradeSerial(serial)!, energy: YKCDecimal(kWh)!)
}

@Suite("Outbox: bills acked after commit, delivered at least once")
struct OutboxTests {
    @Test("0x40 comes only after the bill is committed; it is in SQLite when the pile sees the ack")
    func ackAfterCommit() async throws {
        try await withOutbox { gw, _, outbox in
            let pile = try await gw.pile("66010600000001", guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            let serial = TradeSerial("66010600000001012411231200000001")!
            try await pile.uploadBill(bill("66010600000001", serial: serial.description))
            try await pile.waitForBillAck(serial, timeout: .seconds(3))
            let stored = try await outbox.events(service: nil, after: 0, limit: 10)
            #expect(stored.map(\.tradeSerial) == [serial.description])
            #expect(stored.first?.event == "transaction_record")
            #expect(((stored.first?.payload["data"])?["totalEnergy"])?.doubleValue == 3.0067)
            await pile.stop()
        }
    }

    @Test("a failed commit sends no 0x40; the pile keeps its bill and retries until a commit succeeds")
    func failedCommitNoAck() async throws {
        try await withOutbox { gw, _, outbox in
            // The writer connection refuses writes from now on, as a full or failing disk would.
            try await outbox.database.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA query_only = 1") }
            let pile = try await gw.pile("66010600000002", guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            let serial = TradeSerial("66010600000002012411231200000001")!
            var big = bill("66010600000002", serial: serial.description)
            big.vin = "LSVAU2180N2183294"
            try await pile.uploadBill(big)
            try await Task.sleep(nanoseconds: 800_000_000)
            let s = await pile.state()
            #expect(!s.billsAcked.contains(serial))
            #expect((s.billSends[serial] ?? 0) >= 2)
            #expect(outbox.stats.withLockedValue { $0.commitFailures } >= 1)
            // The disk recovers: the pile's next retry is stored and acked.
            try await outbox.database.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA query_only = 0") }
            try await pile.waitForBillAck(serial, timeout: .seconds(3))
            await pile.stop()
        }
    }

    @Test("a re-sent bill is acked again but stored and delivered once")
    func duplicateBill() async throws {
        try await withOutbox { gw, _, outbox in
            let billing = try await TestBackend.connect(apiPort: gw.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["transaction_record"])
            let pile = try await gw.pile("66010600000003", guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            let record = bill("66010600000003", serial: "66010600000003012411231200000009")
            _ = try await pile.send(record, sequence: YKCSequence(0, 1))
            _ = try await pile.send(record, sequence: YKCSequence(0, 2))
            _ = try await pile.waitForFrame(code: 0x40)
            let second = try await pile.waitForFrame(code: 0x40)
            #expect(second.sequence == YKCSequence(0, 2))
            try await billing.waitForEvent("transaction_record")
            try await Task.sleep(nanoseconds: 500_000_000)
            #expect(billing.events.filter { $0["event"] as? String == "transaction_record" }.count == 1)
            #expect(outbox.stats.withLockedValue { $0.duplicates } == 1)
            await pile.stop()
            await billing.close()
        }
    }

    @Test("with the backend down, bills wait and are delivered when it subscribes again")
    func backendDownThenUp() async throws {
        try await withOutbox { gw, _, outbox in
            let first = try await TestBackend.connect(apiPort: gw.apiPort)
            try await first.subscribe(service: "billing", instance: "b1", events: ["transaction_record"])
            await first.close()
            let pile = try await gw.pile("66010600000004", guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            for i in 1...3 {
                let serial = TradeSerial("6601060000000401241123120000000\(i)")!
                try await pile.uploadBill(bill("66010600000004", serial: serial.description))
                try await pile.waitForBillAck(serial, timeout: .seconds(3))
            }
            await outbox.refreshSummary()
            #expect(try await outbox.summary().pending["billing"]?["transaction_record"] == 3)
            let again = try await TestBackend.connect(apiPort: gw.apiPort)
            try await again.subscribe(service: "billing", instance: "b2", events: ["transaction_record"])
            #expect(await gw.eventually(timeout: 5) { again.events.count == 3 })
            #expect(await gw.eventually(timeout: 3) { (try? await outbox.summary().pending["billing"]?["transaction_record"]) == nil })
            let serials = again.events.compactMap { ($0["data"] as? [String: Any])?["tradeSerial"] as? String }
            #expect(serials == (1...3).map { "6601060000000401241123120000000\($0)" })
            let api = try await gw.http("GET", "/v1/outbox")
            #expect(api.status == 200)
            await pile.stop()
            await again.close()
        }
    }

    @Test("events handed to an instance that disconnects before acking are redelivered")
    func redeliveredAfterDisconnect() async throws {
        try await withOutbox { gw, _, _ in
            let flaky = try await TestBackend.connect(apiPort: gw.apiPort, autoAck: false)
            try await flaky.subscribe(service: "billing", instance: "flaky", events: ["transaction_record"])
            let pile = try await gw.pile("66010600000005", guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            let serial = TradeSerial("66010600000005012411231200000001")!
            try await pile.uploadBill(bill("66010600000005", serial: serial.description))
            try await flaky.waitForEvent("transaction_record")
            await flaky.close()
            let steady = try await TestBackend.connect(apiPort: gw.apiPort)
            try await steady.subscribe(service: "billing", instance: "steady", events: ["transaction_record"])
            try await steady.waitForEvent("transaction_record", timeout: 5) {
                ($0["data"] as? [String: Any])?["tradeSerial"] as? String == serial.description
            }
            await pile.stop()
            await steady.close()
        }
    }

    @Test("each service has its own progress; compaction removes only what every service acked")
    func perServiceProgressAndCompaction() async throws {
        try await withOutbox { gw, _, outbox in
            let billing = try await TestBackend.connect(apiPort: gw.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["transaction_record"])
            let audit = try await TestBackend.connect(apiPort: gw.apiPort, autoAck: false)
            try await audit.subscribe(service: "audit", instance: "a1", events: ["*"])
            let pile = try await gw.pile("66010600000006", guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            let serial = TradeSerial("66010600000006012411231200000001")!
            try await pile.uploadBill(bill("66010600000006", serial: serial.description))
            try await billing.waitForEvent("transaction_record")
            let auditEvent = try await audit.waitForEvent("transaction_record")
            #expect(await gw.eventually { (try? await outbox.summary().pending["billing"]?["transaction_record"]) == nil })
            #expect(try await outbox.summary().pending["audit"]?["transaction_record"] == 1)
            // Not yet acked by audit: compaction keeps it even far in the future.
            #expect(try await outbox.compact(now: Date().addingTimeInterval(86_400)) == 0)
            audit.send(#"{"type":"ack","id":"\#(auditEvent["id"] as? String ?? "")"}"#)
            #expect(await gw.eventually { (try? await outbox.summary().pending["audit"]?["transaction_record"]) == nil })
            // Within the retention it stays; past it, it goes.
            #expect(try await outbox.compact() == 0)
            #expect(try await outbox.compact(now: Date().addingTimeInterval(86_400)) == 1)
            #expect(try await outbox.events(service: nil, after: 0, limit: 10).isEmpty)
            await pile.stop()
            await billing.close()
            await audit.close()
        }
    }

    @Test("after an abrupt stop, a new gateway on the same data delivers every acknowledged bill")
    func recoveryAfterCrash() async throws {
        let dir = NSTemporaryDirectory() + "pilegate-crash-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var acked: [TradeSerial] = []
        try await withOutbox(dataDirectory: dir) { gw, _, _ in
            let billing = try await TestBackend.connect(apiPort: gw.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["transaction_record"])
            await billing.close()
            let pile = try await gw.pile("66010600000007", guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            for i in 1...4 {
                let serial = TradeSerial("6601060000000701241123120000000\(i)")!
                try await pile.uploadBill(bill("66010600000007", serial: serial.description))
                try await pile.waitForBillAck(serial, timeout: .seconds(3))
                acked.append(serial)
            }
            await pile.stop()
        }
        // A fresh process on the same data directory (the outbox is reopened from disk).
        let ackedByPiles = acked
        try await withOutbox(dataDirectory: dir) { gw, _, _ in
            let billing = try await TestBackend.connect(apiPort: gw.apiPort)
            try await billing.subscribe(service: "billing", instance: "b2", events: ["transaction_record"])
            #expect(await gw.eventually(timeout: 5) { billing.events.count == ackedByPiles.count })
            let got = Set(billing.events.compactMap { ($0["data"] as? [String: Any])?["tradeSerial"] as? String })
            #expect(got == Set(ackedByPiles.map(\.description)))
            await billing.close()
        }
    }
}
