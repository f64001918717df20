import Foundation
import PileSim
import Testing
import YKC

@testable import PileGate

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Queued commands across a kill -9 of a real `pilegate serve`: a queued command survives and is
/// delivered after the restart; one taken for sending before the kill is reported as `unknown`
/// and never sent again.
@Suite("Queued commands across restarts", .serialized)
struct QueuedCommandRestartTests {
    static func post(_ api: Int, _ path: String, body: String) async throws -> (Int, [String: Any]) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(api)\(path)")!, timeoutInterval: 10)
        request.httpMethod = "POST"
        request.httpBody = Data(body.utf8)
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
    }

    static func pile(_ id: String, port: Int, ignoring codes: Set<UInt8> = []) async throws -> SimulatedPile {
        var c = SimulatedPileConfig.fast(pileID: PileID(id) ?? PileID(raw: 0), gunCount: 1)
        c.reconnect = .never
        c.requestBillingModel = false
        c.ignoredCommandCodes = codes
        return try await SimulatedPile.connect(to: port, c)
    }

    @Test("queued, kill -9, restarted: the pile logs in and gets the command; the backend gets its result")
    func survivesKill() async throws {
        let first = try ServeProcess.start()
        defer { first.cleanUp() }
        let (_, api) = try await first.waitUntilStarted()
        let (status, queued) = try await Self.post(
            api, "/v1/piles/55010600003101/commands/work_params?deliverWithin=600", body: #"{"workMode":"enabled","maxOutputPercent":70}"#)
        #expect(status == 202)
        let id = try #require(queued["id"] as? String)
        first.signal(SIGKILL)
        #expect(await first.waitForExit(timeout: 10) != nil)

        let second = try ServeProcess.start(dataDirectory: first.dataDirectory)
        defer { second.cleanUp() }
        let (pilePort, api2) = try await second.waitUntilStarted()
        let backend = try await TestBackend.connect(apiPort: api2)
        try await backend.subscribe(service: "billing", instance: "b1", events: ["command_result"])
        let pile = try await Self.pile("55010600003101", port: pilePort)
        try await pile.waitForLogin()
        let frame = try await pile.waitForFrame(code: 0x52, timeout: .seconds(10))
        var body = frame.body
        #expect(try WorkParams(decoding: &body).maxOutputPercent == 70)
        let result = try await backend.waitForEvent("command_result", timeout: 10) { $0["id"] as? String == id }
        let data = result["data"] as? [String: Any] ?? [:]
        #expect(data["outcome"] as? String == "replied")
        #expect((data["reply"] as? [String: Any])?["event"] as? String == "work_params_reply")
        await pile.stop()
        await backend.close()
    }

    @Test("taken and sent, kill -9 before the reply: reported as outcome unknown at restart, never sent again")
    func takenBeforeKillIsUnknown() async throws {
        let first = try ServeProcess.start(["hubCommandTimeout": "120"])
        defer { first.cleanUp() }
        let (pilePort, api) = try await first.waitUntilStarted()
        let (status, queued) = try await Self.post(
            api, "/v1/piles/55010600003102/commands/work_params?deliverWithin=600", body: #"{"workMode":"enabled","maxOutputPercent":60}"#)
        #expect(status == 202)
        let id = try #require(queued["id"] as? String)
        // The pile takes the frame and never answers: the gateway waits for the reply.
        let silent = try await Self.pile("55010600003102", port: pilePort, ignoring: [0x52])
        try await silent.waitForLogin()
        _ = try await silent.waitForFrame(code: 0x52, timeout: .seconds(10))
        first.signal(SIGKILL)
        #expect(await first.waitForExit(timeout: 10) != nil)
        await silent.stop()

        let second = try ServeProcess.start(["hubCommandTimeout": "120"], dataDirectory: first.dataDirectory)
        defer { second.cleanUp() }
        let (pilePort2, api2) = try await second.waitUntilStarted()
        let backend = try await TestBackend.connect(apiPort: api2)
        try await backend.subscribe(service: "billing", instance: "b1", events: ["command_result"])
        let result = try await backend.waitForEvent("command_result", timeout: 10) { $0["id"] as? String == id }
        let data = result["data"] as? [String: Any] ?? [:]
        #expect(data["outcome"] as? String == "unknown")
        #expect(data["error"] as? String == "unknown")
        #expect(data["sentAt"] is String)
        let pile = try await Self.pile("55010600003102", port: pilePort2)
        try await pile.waitForLogin()
        try await Task.sleep(nanoseconds: 1_500_000_000)
        #expect(await pile.receivedFrames(code: 0x52).isEmpty)
        #expect(backend.events.filter { $0["id"] as? String == id }.count == 1)
        await pile.stop()
        await backend.close()
    }
}
