import Foundation
import NIOCore
@testable import PileGate
import Testing
import YKC

/// Hostile and careless numbers from backends and operators (issue 14, items 1, 2 and 13): every
/// value on the command and reply paths is taken exactly or refused with `invalid_args` naming the
/// field and its range — never a trap, never a silently rounded or clamped value on the wire.
@Suite("Command input: timeouts, money and times are exact or refused")
struct CommandInputTests {
    /// A logged-in pile that only records what the gateway sends it (answers nothing).
    private func rawPile(_ gw: TestGateway, _ id: String) async throws -> RawClient {
        let raw = try await RawClient.connect(port: gw.pilePort)
        try await raw.send(Frames.login(id))
        #expect(await gw.eventually { Frames.parse(raw.receivedBytes).contains { $0.code == 0x02 } })
        #expect(await gw.eventually { gw.gateway.directory.session(for: PileID(id)!) != nil })
        return raw
    }

    @Test("an out-of-range command timeout is a 400 invalid_args naming the range, over HTTP and WebSocket")
    func commandTimeouts() async throws {
        try await withHub({ $0.livenessTimeout = 120 }) { gw, _ in
            let pile = try await rawPile(gw, "55010600002001")
            for bad in ["1e300", "nan", "inf", "-inf", "9300000000", "0", "-1", "abc", "3601"] {
                let r = try await gw.http("POST", "/v1/piles/55010600002001/commands/reboot?timeout=\(bad)", body: #"{"when":"immediately"}"#)
                #expect(r.status == 400, "timeout=\(bad)")
                #expect(r.object["error"] as? String == "invalid_args", "timeout=\(bad)")
                #expect((r.object["message"] as? String)?.contains("0.01...3600") == true, "timeout=\(bad): \(r.body)")
            }
            let ops = try await TestBackend.connect(apiPort: gw.apiPort)
            try await ops.subscribe(service: "ops", instance: "o1", events: ["pile_online"])
            for (i, bad) in ["1e10", "-5", "\"soon\"", "1e300", "true"].enumerated() {
                ops.send(#"{"type":"command","requestId":"t\#(i)","pile":"55010600002001","command":"reboot","args":{"when":"immediately"},"timeout":\#(bad)}"#)
                let r = try await ops.waitFor("t\(i)") { $0["requestId"] as? String == "t\(i)" }
                #expect(r["error"] as? String == "invalid_args", "timeout \(bad)")
                #expect((r["message"] as? String)?.contains("0.01...3600") == true, "timeout \(bad)")
            }
            // Nothing reached the pile, and the gateway is alive and still serving.
            #expect(!Frames.parse(pile.receivedBytes).contains { $0.code == 0x92 })
            #expect(try await gw.http("GET", "/healthz").status == 200)
            // A valid timeout still works (the pile does not answer: timeout, quickly).
            let r = try await gw.http("POST", "/v1/piles/55010600002001/commands/reboot?timeout=0.2", body: #"{"when":"immediately"}"#)
            #expect(r.status == 504)
            await ops.close()
            await pile.close()
        }
    }

    @Test("a decimal a field cannot carry is refused with the field and its range; nothing reaches the pile")
    func outOfRangeDecimals() async throws {
        try await withHub({ $0.livenessTimeout = 120 }) { gw, _ in
            let pile = try await rawPile(gw, "55010600002002")
            let card = #""gun":1,"physicalCardNumber":"00000000D14B0A54""#
            for bad in ["1e300", "-1e300", "-0.01", "42949672.96", "1e19", "12.345", "\"12.345\"", "1e-9", "\"1e-9\"", "\"abc\""] {
                let r = try await gw.http(
                    "POST", "/v1/piles/55010600002002/commands/balance_update?timeout=0.5", body: "{\(card),\"balance\":\(bad)}")
                #expect(r.status == 400, "balance \(bad): \(r.body)")
                #expect(r.object["error"] as? String == "invalid_args", "balance \(bad)")
                let message = r.object["message"] as? String ?? ""
                #expect(message.contains("'balance'") && message.contains("0.00...42949672.95"), "balance \(bad): \(message)")
            }
            let ops = try await TestBackend.connect(apiPort: gw.apiPort)
            try await ops.subscribe(service: "ops", instance: "o1", events: ["pile_online"])
            ops.send(
                #"{"type":"command","requestId":"rs","pile":"55010600002002","command":"remote_start","args":{"gun":1,"tradeSerial":"55010600002002012411231200000001","logicalCardNumber":"1","physicalCardNumber":"1","balance":1e19}}"#
            )
            let rs = try await ops.waitFor("rs") { $0["requestId"] as? String == "rs" }
            #expect(rs["error"] as? String == "invalid_args")
            #expect((rs["message"] as? String)?.contains("'balance'") == true)
            #expect(!Frames.parse(pile.receivedBytes).contains { $0.code == 0x42 || $0.code == 0x34 })
            // Values the field carries exactly are sent exactly, as numbers and as strings.
            for (i, good) in ["12.34", "\"12.3\"", "1e1", "42949672.95"].enumerated() {
                _ = try await gw.http(
                    "POST", "/v1/piles/55010600002002/commands/balance_update?timeout=0.05", body: "{\(card),\"balance\":\(good)}")
                #expect(await gw.eventually { Frames.parse(pile.receivedBytes).filter { $0.code == 0x42 }.count == i + 1 })
            }
            let sent = Frames.parse(pile.receivedBytes).filter { $0.code == 0x42 }.compactMap { f -> String? in
                if case .balanceUpdate(let b) = YKCMessage.decode(f) { return b.balance.description }
                return nil
            }
            #expect(sent == ["12.34", "12.30", "10.00", "42949672.95"])
            #expect(try await gw.http("GET", "/healthz").status == 200)
            await ops.close()
            await pile.close()
        }
    }

    @Test("a backend reply with a price out of range is invalid_reply naming the field and range; the fallback answers")
    func outOfRangeReply() async throws {
        try await withHub({ $0.livenessTimeout = 120 }) { gw, _ in
            let billing = try await TestBackend.connect(apiPort: gw.apiPort, autoAck: false)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["billing_model_request"])
            let pile = try await rawPile(gw, "55010600002003")
            try await pile.send(BillingModelRequest(pileId: PileID("55010600002003")!).frame(sequence: YKCSequence(counter: 7)))
            let event = try await billing.waitForEvent("billing_model_request")
            let id = event["id"] as? String ?? ""
            let prices = ["sharp", "peak", "flat", "valley"].map { #""\#($0)EnergyPrice":1,"\#($0)ServiceFee":0.5"# }.joined(separator: ",")
            let periods = Array(repeating: "0", count: 48).joined(separator: ",")
            let reply = #"{"type":"reply","id":"\#(id)","data":{"billingModel":"0001",\#(prices),"periods":[\#(periods)],"lossRatio":0}}"#
            billing.send(reply.replacingOccurrences(of: #""peakEnergyPrice":1"#, with: #""peakEnergyPrice":1e300"#))
            let error = try await billing.waitFor("invalid_reply") { $0["error"] as? String == "invalid_reply" }
            let message = error["message"] as? String ?? ""
            #expect(message.contains("'peakEnergyPrice'") && message.contains("0.00000...42949.67295"), "\(message)")
            // Still pending: a corrected reply is accepted and reaches the pile.
            billing.send(reply)
            #expect(await gw.eventually { Frames.parse(pile.receivedBytes).contains { $0.code == 0x0A } })
            #expect(try await gw.http("GET", "/healthz").status == 200)
            await billing.close()
            await pile.close()
        }
    }

    @Test("a time the frame cannot carry is refused, not moved to another year or rounded")
    func timesOutOfRange() async throws {
        try await withHub({ $0.livenessTimeout = 120 }) { gw, _ in
            let pile = try await rawPile(gw, "55010600002004")
            let bad = [
                "2200-01-01T00:00:00+08:00", "1990-06-01T00:00:00+08:00", "2024-01-02T99:00:00+08:00",
                "2024-02-30T00:00:00+08:00", "2024-01-02T03:04:05.0001+08:00", "2127-12-31T23:00:00Z",
                "2024-01-02T03:04:05+08:00junk", "2024/01/02T03:04:05",
            ]
            for t in bad {
                let r = try await gw.http("POST", "/v1/piles/55010600002004/commands/time_sync?timeout=0.5", body: #"{"time":"\#(t)"}"#)
                #expect(r.status == 400, "\(t): \(r.body)")
                #expect((r.object["message"] as? String)?.contains("'time'") == true, "\(t): \(r.body)")
            }
            #expect(!Frames.parse(pile.receivedBytes).contains { $0.code == 0x56 })
            // An exact time goes out exactly, milliseconds and all.
            _ = try await gw.http(
                "POST", "/v1/piles/55010600002004/commands/time_sync?timeout=0.05", body: #"{"time":"2127-12-31T23:59:59.999000+08:00"}"#)
            #expect(await gw.eventually { Frames.parse(pile.receivedBytes).contains { $0.code == 0x56 } })
            let sent = Frames.parse(pile.receivedBytes).first { $0.code == 0x56 }.flatMap { f -> String? in
                if case .timeSync(let t) = YKCMessage.decode(f) { return t.time.iso8601() }
                return nil
            }
            #expect(sent == "2127-12-31T23:59:59.999+08:00")
            await pile.close()
        }
    }
}
