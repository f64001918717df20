import Foundation
import NIOCore
import PileGate
import PileSim
import Testing
import YKC

/// Flapping bans are operable: listed by `GET /v1/bans`, lifted by `DELETE /v1/bans/{key}`,
/// after which the pile or address is served again at once.
@Suite("Flapping bans over the admin API")
struct BanAPITests {
    @Test("a flapping pile id is banned, listed with why, lifted, and then logs in")
    func pileBanListedAndLifted() async throws {
        try await withGateway({
            $0.flapMaxConnects = 2
            $0.flapWindow = 30
            $0.flapBanDuration = 600
            $0.maxConnectionsPerAddress = 100
        }) { gw in
            let pile = "32010600019260"
            func login(_ i: Int) async throws -> LoginResult {
                let p = try await gw.pile(pile, guns: 1) { c in
                    c.sourceAddress = try? SocketAddress(ipAddress: "127.0.0.\(30 + i)", port: 0)
                }
                let result = try await p.waitForLoginResult()
                await p.stop()
                return result
            }
            for i in 0..<3 { _ = try await login(i) }
            #expect(gw.counters.refused[.pileBanned]?.load(ordering: .relaxed) == 1)

            let list = try await gw.http("GET", "/v1/bans")
            #expect(list.status == 200)
            let bans = try #require(list.object["bans"] as? [[String: Any]])
            #expect(bans.count == 1, "\(list.body)")
            let ban = try #require(bans.first)
            #expect(ban["key"] as? String == "pile:\(pile)")
            #expect(ban["kind"] as? String == "pile")
            #expect(ban["connects"] as? Int == 3)
            #expect(ban["limit"] as? Int == 2)
            #expect(ban["windowSeconds"] as? Double == 30)
            let remaining = try #require(ban["remainingSeconds"] as? Int)
            #expect(remaining > 500 && remaining <= 600)
            #expect(ban["since"] is String && ban["until"] is String)

            // Still banned: a fourth login is refused.
            #expect(try await login(3) == .rejected)

            let lifted = try await gw.http("DELETE", "/v1/bans/pile:\(pile)")
            #expect(lifted.status == 200, "\(lifted.body)")
            #expect(lifted.object["lifted"] as? String == "pile:\(pile)")
            let again = try await gw.http("DELETE", "/v1/bans/pile:\(pile)")
            #expect(again.status == 404)
            #expect(again.object["error"] as? String == "no_ban")
            #expect((try await gw.http("GET", "/v1/bans")).object["bans"] as? [Any] != nil)
            #expect(((try await gw.http("GET", "/v1/bans")).object["bans"] as? [Any])?.isEmpty == true)

            #expect(try await login(4) == .accepted)
        }
    }

    @Test("a flapping source address is banned, listed, lifted, and its piles are served again")
    func addressBanListedAndLifted() async throws {
        try await withGateway({
            $0.flapMaxConnectsPerAddress = 3
            $0.flapWindow = 30
            $0.flapBanDuration = 600
        }) { gw in
            for _ in 0..<3 {
                let c = try await RawClient.connect(port: gw.pilePort)
                try await c.send(Frames.login("32010600019261"))
                #expect(await gw.eventually { Frames.parse(c.receivedBytes).contains { $0.code == 0x02 } })
                await c.close()
            }
            let banned = try await RawClient.connect(port: gw.pilePort)
            #expect(await gw.eventually(timeout: 3) { banned.isClosed })

            let bans = try #require((try await gw.http("GET", "/v1/bans")).object["bans"] as? [[String: Any]])
            #expect(bans.count == 1)
            #expect(bans.first?["key"] as? String == "addr:127.0.0.1")
            #expect(bans.first?["kind"] as? String == "address")
            #expect(bans.first?["connects"] as? Int == 4)
            #expect(bans.first?["limit"] as? Int == 3)

            let lifted = try await gw.http("DELETE", "/v1/bans/addr:127.0.0.1")
            #expect(lifted.status == 200, "\(lifted.body)")
            #expect(lifted.object["lifted"] as? String == "addr:127.0.0.1")

            let p = try await gw.pile("32010600019261", guns: 1)
            #expect(try await p.waitForLoginResult() == .accepted)
            await p.stop()
        }
    }

    @Test("ban keys are validated: a bare id, an unknown prefix or a bad address is a 400 naming the form")
    func invalidKeys() async throws {
        try await withGateway { gw in
            for key in ["32010600019262", "host:127.0.0.1", "pile:12x", "pile:", "addr:300.1.1.1", "addr:localhost"] {
                let r = try await gw.http("DELETE", "/v1/bans/\(key)")
                #expect(r.status == 400, "\(key): \(r.body)")
                #expect(r.object["error"] as? String == "invalid_ban_key")
                #expect((r.object["message"] as? String)?.contains("expected pile:<pile id> or addr:<IPv4 or IPv6 address>") == true)
            }
            let none = try await gw.http("DELETE", "/v1/bans/addr:::1")
            #expect(none.status == 404, "\(none.body)")
            #expect((try await gw.http("DELETE", "/v1/bans/pile:32010600019262")).status == 404)
        }
    }
}
