import Foundation
import NIOCore
import PileGate
import PileSim
import Testing
import YKC

/// Per-pile overrides of the per-connection limits (`PUT /v1/piles/{id}/limits`), for piles with
/// chatty firmware: stored in SQLite, applied at login, shown in `GET /v1/piles/{id}`.
@Suite("Per-pile limit overrides")
struct PileLimitTests {
    /// Logs `pile` in over a raw socket and sends heartbeats at about 1,000 a second for about a
    /// second (or until the gateway closes it). Returns whether the connection is still open.
    static func chatter(_ gw: TestGateway, pile: String) async throws -> Bool {
        let raw = try await RawClient.connect(port: gw.pilePort)
        try await raw.send(Frames.login(pile))
        #expect(await gw.eventually { Frames.parse(raw.receivedBytes).contains { $0.code == 0x02 } })
        var seq: UInt16 = 0
        for _ in 0..<50 where !raw.isClosed {
            var batch: [UInt8] = []
            for _ in 0..<20 {
                seq &+= 1
                batch += Frames.heartbeat(pile, sequence: seq).bytes
            }
            try? await raw.send(batch)
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        // Give a throttled connection the time to be closed.
        _ = await gw.eventually(timeout: 2) { raw.isClosed }
        let open = !raw.isClosed
        await raw.close()
        return open
    }

    static func throttleDefaults(_ c: inout GatewayConfiguration) {
        c.frameRatePerSecond = 20
        c.frameBurst = 20
        c.throttlePause = 0.1
        c.maxThrottleEpisodes = 2
        c.throttleWindow = 30
    }

    @Test("an override set before a restart survives it and lets a chatty pile through the default frame rate")
    func overrideSurvivesRestartAndPasses() async throws {
        let dir = NSTemporaryDirectory() + "limits-restart-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let chatty = "32010600019270"
        let first = try await TestGateway.start { $0.dataDirectory = dir; Self.throttleDefaults(&$0) }
        let put = try await first.http(
            "PUT", "/v1/piles/\(chatty)/limits", body: #"{"frameRatePerSecond":100000,"frameBurst":100000}"#)
        await first.stop()
        #expect(put.status == 201, "\(put.body)")

        let gw = try await TestGateway.start { $0.dataDirectory = dir; Self.throttleDefaults(&$0) }
        do {
            let got = try await gw.http("GET", "/v1/piles/\(chatty)/limits")
            #expect(got.status == 200, "\(got.body)")
            #expect(got.object["frameRatePerSecond"] as? Double == 100_000)
            #expect(got.object["frameBurst"] as? Double == 100_000)
            #expect(got.object["byteBurst"] == nil)

            #expect(try await Self.chatter(gw, pile: chatty), "the override lets the chatty pile through")
            #expect(gw.counters.throttleEpisodes.load(ordering: .relaxed) == 0)
            // The same chatter from a pile without an override is throttled and closed.
            #expect(try await Self.chatter(gw, pile: "32010600019271") == false)
            #expect(await gw.eventually { gw.counters.closed[.rateLimited]?.load(ordering: .relaxed) == 1 })
        } catch {
            await gw.stop()
            throw error
        }
        await gw.stop()
    }

    @Test("an override lower than the default throttles a pile the default lets through")
    func lowerOverrideThrottles() async throws {
        try await withGateway({
            $0.frameRatePerSecond = 100_000
            $0.frameBurst = 100_000
            $0.throttlePause = 0.1
            $0.maxThrottleEpisodes = 2
            $0.throttleWindow = 30
        }) { gw in
            #expect(try await Self.chatter(gw, pile: "32010600019272"), "the default lets it through")
            #expect(gw.counters.throttleEpisodes.load(ordering: .relaxed) == 0)
            let put = try await gw.http("PUT", "/v1/piles/32010600019272/limits", body: #"{"frameRatePerSecond":20,"frameBurst":20}"#)
            #expect(put.status == 201, "\(put.body)")
            #expect(try await Self.chatter(gw, pile: "32010600019272") == false, "the override throttles it")
            #expect(gw.counters.throttleEpisodes.load(ordering: .relaxed) >= 2)
            #expect(await gw.eventually { gw.counters.closed[.rateLimited]?.load(ordering: .relaxed) == 1 })
        }
    }

    @Test("invalid bodies get 400 naming the problem; GET, DELETE and GET /v1/piles/{id} and piles show")
    func apiAndValidation() async throws {
        try await withGateway { gw in
            let pile = "32010600019273"
            let path = "/v1/piles/\(pile)/limits"
            for (body, needle) in [
                (#"{"frameRate":5}"#, "frameRate"),
                (#"{"frameRatePerSecond":0}"#, "frameRatePerSecond"),
                (#"{"byteBurst":100}"#, "byteBurst"),
                (#"{"frameBurst":"10"}"#, "frameBurst"),
                (#"{"byteRatePerSecond":1e300}"#, "byteRatePerSecond"),
                (#"{}"#, "at least one"),
                (#"[1]"#, "JSON object"),
            ] {
                let r = try await gw.http("PUT", path, body: body)
                #expect(r.status == 400, "\(body): \(r.body)")
                #expect(r.object["error"] as? String == "invalid_limits", "\(body): \(r.body)")
                #expect((r.object["message"] as? String)?.contains(needle) == true, "\(body): \(r.body)")
            }
            let notJSON = try await gw.http("PUT", path, body: "{")
            #expect(notJSON.status == 400)
            #expect(notJSON.object["error"] as? String == "invalid_json")
            #expect((try await gw.http("GET", path)).status == 404)
            #expect((try await gw.http("DELETE", path)).object["error"] as? String == "no_limits")

            let p = try await gw.pile(pile)
            #expect(try await p.waitForLoginResult() == .accepted)
            // Stays connected: `GET /v1/piles/{id}` shows it from its session before the registry flush.
            let plain = try await gw.http("GET", "/v1/piles/\(pile)")
            #expect(plain.status == 200 && plain.object["limits"] == nil, "\(plain.body)")

            let put = try await gw.http("PUT", path, body: #"{"byteRatePerSecond":50000,"byteBurst":100000}"#)
            #expect(put.status == 201, "\(put.body)")
            let again = try await gw.http("PUT", path, body: #"{"byteRatePerSecond":60000}"#)
            #expect(again.status == 200, "replacing answers 200: \(again.body)")
            #expect(again.object["byteBurst"] == nil, "a PUT replaces the whole override")
            let shown = try await gw.http("GET", "/v1/piles/\(pile)")
            #expect(shown.status == 200)
            let limits = try #require(shown.object["limits"] as? [String: Any], "\(shown.body)")
            #expect(limits["byteRatePerSecond"] as? Double == 60_000)

            let cli = try await CLI.run(["piles", "show", pile, "--api", "http://127.0.0.1:\(gw.apiPort)"])
            #expect(cli.status == 0, "\(cli.stderr)")
            #expect(cli.lines.contains { $0.hasPrefix("limits") && $0.contains("byteRatePerSecond=60000") }, "\(cli.stdout)")

            let removed = try await gw.http("DELETE", path)
            #expect(removed.status == 200)
            #expect(removed.object["removed"] as? String == pile)
            #expect((try await gw.http("GET", path)).status == 404)
            #expect((try await gw.http("GET", "/v1/piles/\(pile)")).object["limits"] == nil)
            await p.stop()
        }
    }
}
