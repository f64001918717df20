import Foundation
import NIOCore
import PileGate
import PileSim
import Testing
import YKC

@Suite("Cluster mode: provisioned piles and pile bans hold on every node (JetStream KV)", .serialized)
struct ClusterSharedPilesTests {
    static func login(_ pile: String, to node: AssembledGateway, from host: String = "127.0.0.1") async throws
        -> LoginResult
    {
        var c = SimulatedPileConfig.fast(pileID: PileID(pile)!, gunCount: 1)
        c.reconnect = .never
        c.sourceAddress = try SocketAddress(ipAddress: host, port: 0)
        let p = try await SimulatedPile.connect(to: node.gateway.pilePort ?? 0, c)
        let result = try await p.waitForLoginResult()
        await p.stop()
        return result
    }

    static func bans(_ node: AssembledGateway) async -> [String] {
        let list = (try? await node.http("GET", "/v1/bans"))?.json["bans"] as? [[String: Any]] ?? []
        return list.compactMap { $0["key"] as? String }
    }

    @Test("a pile provisioned on one node logs in on another; removed there, it is refused on the first")
    func provisioning() async throws {
        try await ClusterFixture.with { cluster in
            let a = try await cluster.startNode("n1") { $0.loginPolicy = .registry }
            let b = try await cluster.startNode("n2") { $0.loginPolicy = .registry }
            #expect(await a.eventually { await a.clusterMembers().count == 2 })
            #expect(try await Self.login("32010600019301", to: b) == .rejected)
            #expect(try await a.http("PUT", "/v1/piles/32010600019301").status == 201)
            #expect(await b.eventually(timeout: 3) { b.gateway.registry.isKnown(PileID("32010600019301")!) })
            #expect(try await Self.login("32010600019301", to: b) == .accepted)
            #expect(try await b.http("DELETE", "/v1/piles/32010600019301").status == 200)
            #expect(await a.eventually(timeout: 3) { !a.gateway.registry.isKnown(PileID("32010600019301")!) })
            #expect(try await Self.login("32010600019301", to: a) == .rejected)
        }
    }

    @Test("a node that joins later learns every pile provisioned before it")
    func lateJoinerCatchesUp() async throws {
        try await ClusterFixture.with { cluster in
            let a = try await cluster.startNode("n1") { $0.loginPolicy = .registry }
            #expect(await a.eventually { await a.clusterMembers() == ["n1"] })
            let ids = (0..<30).map { String(format: "320106000194%02d", $0) }
            for id in ids { #expect(try await a.http("PUT", "/v1/piles/\(id)").status == 201) }
            let b = try await cluster.startNode("n2") { $0.loginPolicy = .registry }
            #expect(await b.eventually(timeout: 5) { ids.allSatisfy { b.gateway.registry.isKnown(PileID($0)!) } })
        }
    }

    @Test("a pile banned for flapping on one node is banned on the others; lifted on one, lifted everywhere")
    func bans() async throws {
        let flapping: (inout GatewayConfiguration) -> Void = {
            $0.flapMaxConnects = 2
            $0.flapWindow = 30
            $0.flapBanDuration = 60
            $0.maxConnectionsPerAddress = 100
        }
        try await ClusterFixture.with { cluster in
            let a = try await cluster.startNode("n1", flapping)
            let b = try await cluster.startNode("n2", flapping)
            #expect(await a.eventually { await a.clusterMembers().count == 2 })
            for i in 0..<3 {
                let result = try await Self.login("32010600019310", to: a, from: "127.0.0.\(20 + i)")
                #expect(result == (i < 2 ? .accepted : .rejected))
            }
            #expect(await b.eventually(timeout: 3) { await Self.bans(b) == ["pile:32010600019310"] })
            // Refused on the other node at its first attempt.
            #expect(try await Self.login("32010600019310", to: b, from: "127.0.0.30") == .rejected)
            #expect(try await b.http("DELETE", "/v1/bans/pile:32010600019310").status == 200)
            #expect(await a.eventually(timeout: 3) { await Self.bans(a).isEmpty })
            #expect(try await Self.login("32010600019310", to: a, from: "127.0.0.31") == .accepted)
        }
    }
}
