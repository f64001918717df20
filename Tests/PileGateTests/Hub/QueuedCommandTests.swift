import Foundation
import PileSim
import Testing
import YKC

@testable import PileGate

/// Commands that wait for offline piles (`deliverWithin`), driven as a backend and a pile would:
/// REST and WebSocket commands to a pile that is not connected, the pile logging in later over
/// TCP, the results arriving at a subscribed backend as `command_result` events.
@Suite("Queued commands")
struct QueuedCommandTests {
    /// A `billing_model_set` body (prices in yuan, 48 half-hour periods).
    static let billingModel = """
        {"billingModel":"0007","sharpEnergyPrice":1.2,"sharpServiceFee":0.8,"peakEnergyPrice":1.0,"peakServiceFee":0.6,\
        "flatEnergyPrice":0.7,"flatServiceFee":0.5,"valleyEnergyPrice":0.3,"valleyServiceFee":0.2,"lossRatio":0,\
        "periods":[\(Array(repeating: "\"valley\"", count: 16).joined(separator: ",")),\(Array(repeating: "\"flat\"", count: 16).joined(separator: ",")),\(Array(repeating: "\"peak\"", count: 16).joined(separator: ","))]}
        """

    static let workParams = #"{"workMode":"enabled","maxOutputPercent":80}"#

    /// A backend of service `billing` that takes the queued-command events durably.
    static func billingBackend(_ gw: TestGateway) async throws -> TestBackend {
        let b = try await TestBackend.connect(apiPort: gw.apiPort)
        try await b.subscribe(service: "billing", instance: "b1", events: ["command_result", "command_expired"])
        return b
    }

    static func data(_ event: [String: Any]) -> [String: Any] { event["data"] as? [String: Any] ?? [:] }

    @Test("REST with deliverWithin to an offline pile: 202 and its id; the pile gets the frame at login; the backend gets command_result")
    func queuedThenDelivered() async throws {
        try await withHub { gw, _ in
            let backend = try await Self.billingBackend(gw)
            let queued = try await gw.http("POST", "/v1/piles/55010600003001/commands/billing_model_set?deliverWithin=600", body: Self.billingModel)
            #expect(queued.status == 202)
            let id = try #require(queued.object["id"] as? String)
            #expect(queued.object["status"] as? String == "queued")
            #expect(queued.object["pile"] as? String == "55010600003001")
            let expiresAt = try #require(queued.object["expiresAt"] as? String)
            #expect(expiresAt.hasSuffix("Z"))
            let list = try await gw.http("GET", "/v1/piles/55010600003001/commands/queued")
            #expect(list.status == 200)
            let commands = list.object["commands"] as? [[String: Any]] ?? []
            #expect(commands.count == 1)
            #expect(commands.first?["id"] as? String == id)
            #expect(commands.first?["status"] as? String == "queued")
            #expect((commands.first?["args"] as? [String: Any])?["billingModel"] as? String == "0007")

            let pile = try await gw.pile("55010600003001", guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            let frame = try await pile.waitForFrame(code: 0x58, timeout: .seconds(5))
            var body = frame.body
            let pushed = try BillingModelSet(decoding: &body)
            #expect(pushed.billingModel.description == "0007")
            let result = try await backend.waitForEvent("command_result") { $0["id"] as? String == id }
            let data = Self.data(result)
            #expect(result["pile"] as? String == "55010600003001")
            #expect(data["id"] as? String == id)
            #expect(data["command"] as? String == "billing_model_set")
            #expect(data["outcome"] as? String == "replied")
            #expect(data["ok"] as? Bool == true)
            let reply = data["reply"] as? [String: Any]
            #expect(reply?["event"] as? String == "billing_model_set_reply")
            #expect((reply?["data"] as? [String: Any])?["result"] as? String == "succeeded")
            #expect(data["sentAt"] is String)
            // Gone from the queue once reported; sent once.
            #expect(await gw.eventually { (try? await gw.http("GET", "/v1/piles/55010600003001/commands/queued").object["count"] as? Int) == 0 })
            try await Task.sleep(nanoseconds: 1_500_000_000)
            #expect(await pile.receivedFrames(code: 0x58).count == 1)
            // The pile accepted the model: the gateway answers 0x09 with it from now on.
            await pile.stop()
            await backend.close()
        }
    }

    @Test("several queued commands (REST and WebSocket) go out in queue order, one result each, in order")
    func order() async throws {
        try await withHub { gw, _ in
            let backend = try await Self.billingBackend(gw)
            let p = "55010600003002"
            let first = try await gw.http("POST", "/v1/piles/\(p)/commands/work_params?deliverWithin=600", body: Self.workParams)
            #expect(first.status == 202)
            backend.send(
                #"{"type":"command","requestId":"q2","pile":"\#(p)","command":"billing_model_set","deliverWithin":600,"args":\#(Self.billingModel)}"#)
            let second = try await backend.waitFor("command_queued q2") { $0["requestId"] as? String == "q2" }
            #expect(second["type"] as? String == "command_queued")
            #expect(second["status"] as? String == "queued")
            // A time_sync without a time carries the clock of the moment it goes out.
            let third = try await gw.http("POST", "/v1/piles/\(p)/commands/time_sync?deliverWithin=600", body: "{}")
            #expect(third.status == 202)
            let ids = [first.object["id"] as? String, second["id"] as? String, third.object["id"] as? String].compactMap { $0 }
            #expect(ids.count == 3 && Set(ids).count == 3)

            let pile = try await gw.pile(p, guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            #expect(await gw.eventually(timeout: 10) { backend.events.filter { $0["event"] as? String == "command_result" }.count == 3 })
            let results = backend.events.filter { $0["event"] as? String == "command_result" }
            #expect(results.map { $0["id"] as? String ?? "" } == ids)
            #expect(results.allSatisfy { Self.data($0)["outcome"] as? String == "replied" })
            let codes = await pile.receivedFrames().map(\.code).filter { [0x52, 0x58, 0x56].contains($0) }
            #expect(codes == [0x52, 0x58, 0x56])
            await pile.stop()
            await backend.close()
        }
    }

    @Test("a command whose deliverWithin passes before the pile logs in is reported as command_expired and never sent")
    func expiry() async throws {
        try await withHub { gw, _ in
            let backend = try await Self.billingBackend(gw)
            let p = "55010600003003"
            let r = try await gw.http("POST", "/v1/piles/\(p)/commands/work_params?deliverWithin=1", body: Self.workParams)
            #expect(r.status == 202)
            let id = try #require(r.object["id"] as? String)
            let expired = try await backend.waitForEvent("command_expired", timeout: 6) { $0["id"] as? String == id }
            #expect(Self.data(expired)["command"] as? String == "work_params")
            #expect(Self.data(expired)["expiresAt"] is String)
            #expect(try await gw.http("GET", "/v1/piles/\(p)/commands/queued").object["count"] as? Int == 0)
            let pile = try await gw.pile(p, guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            try await Task.sleep(nanoseconds: 1_500_000_000)
            #expect(await pile.receivedFrames(code: 0x52).isEmpty)
            #expect(!backend.events.contains { $0["event"] as? String == "command_result" })
            await pile.stop()
            await backend.close()
        }
    }

    @Test("a pile online now gets a command with deliverWithin at once, as without it")
    func onlineAtOnce() async throws {
        try await withHub { gw, _ in
            let pile = try await gw.pile("55010600003004", guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            let r = try await gw.http("POST", "/v1/piles/55010600003004/commands/work_params?deliverWithin=60", body: Self.workParams)
            #expect(r.status == 200)
            #expect((r.object["reply"] as? [String: Any])?["event"] as? String == "work_params_reply")
            await pile.stop()
        }
    }

    @Test("per-pile and gateway caps: the command over either is refused with 429 too_many_commands, nothing stored")
    func caps() async throws {
        try await withHub(hub: {
            $0.queuedCommandsPerPile = 2
            $0.queuedCommandsTotal = 3
        }) { gw, _ in
            let path = "/commands/work_params?deliverWithin=600"
            #expect(try await gw.http("POST", "/v1/piles/55010600003005" + path, body: Self.workParams).status == 202)
            #expect(try await gw.http("POST", "/v1/piles/55010600003005" + path, body: Self.workParams).status == 202)
            let full = try await gw.http("POST", "/v1/piles/55010600003005" + path, body: Self.workParams)
            #expect(full.status == 429)
            #expect(full.object["error"] as? String == "too_many_commands")
            #expect((full.object["message"] as? String)?.contains("2 queued commands") == true)
            #expect(try await gw.http("POST", "/v1/piles/55010600003006" + path, body: Self.workParams).status == 202)
            let gatewayFull = try await gw.http("POST", "/v1/piles/55010600003007" + path, body: Self.workParams)
            #expect(gatewayFull.status == 429)
            #expect((gatewayFull.object["message"] as? String)?.contains("hubQueuedCommandsTotal") == true)
            #expect(try await gw.http("GET", "/v1/piles/55010600003005/commands/queued").object["count"] as? Int == 2)
            #expect(try await gw.http("GET", "/v1/piles/55010600003007/commands/queued").object["count"] as? Int == 0)
        }
    }

    @Test("a cancelled command is never sent; unknown ids get 404")
    func cancel() async throws {
        try await withHub { gw, _ in
            let backend = try await Self.billingBackend(gw)
            let p = "55010600003008"
            let a = try await gw.http("POST", "/v1/piles/\(p)/commands/work_params?deliverWithin=600", body: Self.workParams)
            let b = try await gw.http("POST", "/v1/piles/\(p)/commands/billing_model_set?deliverWithin=600", body: Self.billingModel)
            let aid = try #require(a.object["id"] as? String)
            let bid = try #require(b.object["id"] as? String)
            let cancelled = try await gw.http("DELETE", "/v1/piles/\(p)/commands/queued/\(aid)")
            #expect(cancelled.status == 200)
            #expect(cancelled.object["cancelled"] as? String == aid)
            #expect(try await gw.http("DELETE", "/v1/piles/\(p)/commands/queued/\(aid)").status == 404)
            #expect(try await gw.http("DELETE", "/v1/piles/55010600003009/commands/queued/\(bid)").status == 404)
            #expect(try await gw.http("GET", "/v1/piles/nope/commands/queued").status == 400)
            let pile = try await gw.pile(p, guns: 1) { $0.requestBillingModel = false }
            try await pile.waitForLogin()
            try await backend.waitForEvent("command_result") { $0["id"] as? String == bid }
            #expect(await pile.receivedFrames(code: 0x52).isEmpty)
            #expect(await pile.receivedFrames(code: 0x58).count == 1)
            #expect(!backend.events.contains { $0["id"] as? String == aid })
            await pile.stop()
            await backend.close()
        }
    }

    @Test("invalid deliverWithin values get 400 invalid_args naming the range; none traps or is stored")
    func invalidDeliverWithin() async throws {
        try await withHub { gw, _ in
            let p = "55010600003010"
            for bad in ["0", "0.5", "604801", "-1", "nan", "inf", "-inf", "1e308", "1e400", "soon", ""] {
                let r = try await gw.http("POST", "/v1/piles/\(p)/commands/work_params?deliverWithin=\(bad)", body: Self.workParams)
                #expect(r.status == 400, "deliverWithin=\(bad)")
                #expect(r.object["error"] as? String == "invalid_args")
                #expect((r.object["message"] as? String)?.contains("1...604800") == true, "deliverWithin=\(bad): \(r.body)")
            }
            let backend = try await TestBackend.connect(apiPort: gw.apiPort)
            try await backend.subscribe(service: "ops", instance: "o1", events: ["command_result"])
            for (i, bad) in ["0", "-5", "1e300", "\"nan\"", "true", "[]", "{}"].enumerated() {
                backend.send(#"{"type":"command","requestId":"w\#(i)","pile":"\#(p)","command":"work_params","args":\#(Self.workParams),"deliverWithin":\#(bad)}"#)
                let r = try await backend.waitFor("w\(i)") { $0["requestId"] as? String == "w\(i)" }
                #expect(r["error"] as? String == "invalid_args", "deliverWithin \(bad)")
                #expect((r["message"] as? String)?.contains("1...604800") == true)
            }
            // Bad arguments are refused before queueing, as for a direct command.
            let badArgs = try await gw.http("POST", "/v1/piles/\(p)/commands/work_params?deliverWithin=60", body: #"{"workMode":"sideways"}"#)
            #expect(badArgs.status == 400)
            #expect(try await gw.http("GET", "/v1/piles/\(p)/commands/queued").object["count"] as? Int == 0)
            await backend.close()
        }
    }
}
