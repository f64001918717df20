import Foundation
import NATS
import NATSTestSupport
import PileGate
import Testing

@Suite("Cluster mode: lane rules are one list for every node (JetStream KV)", .serialized)
struct ClusterLaneRulesTests {
    static func rules(_ lane: String, version: Int? = nil) -> String {
        let v = version.map { ",\"version\":\($0)" } ?? ""
        return "{\"rules\":[{\"lane\":\"\(lane)\",\"match\":{\"pilePrefix\":\"3201\"}}]\(v)}"
    }

    static func lanes(_ node: AssembledGateway) async -> (lane: String?, version: Int?) {
        guard let answer = try? await node.http("GET", "/v1/lanes") else { return (nil, nil) }
        let rules = answer.json["rules"] as? [[String: Any]]
        return (rules?.first?["lane"] as? String, answer.json["version"] as? Int)
    }

    @Test("a PUT on one node is in force on the others, same version")
    func propagates() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2", "n3"]) { cluster in
            let (a, b, c) = (cluster.nodes[0], cluster.nodes[1], cluster.nodes[2])
            #expect(await a.eventually { await a.clusterMembers().count == 3 })
            let put = try await a.http("PUT", "/v1/lanes", body: Self.rules("gray"))
            #expect(put.status == 200)
            #expect(put.json["version"] as? Int == 1)
            for node in [b, c] {
                #expect(await node.eventually(timeout: 3) { await Self.lanes(node) == ("gray", 1) })
            }
            let second = try await c.http("PUT", "/v1/lanes", body: Self.rules("canary"))
            #expect(second.json["version"] as? Int == 2)
            for node in [a, b] {
                #expect(await node.eventually(timeout: 3) { await Self.lanes(node) == ("canary", 2) })
            }
        }
    }

    @Test("two edits based on the same version: one wins, the other gets 409")
    func concurrentEdits() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let (a, b) = (cluster.nodes[0], cluster.nodes[1])
            #expect(await a.eventually { await a.clusterMembers().count == 2 })
            async let first = a.http("PUT", "/v1/lanes", body: Self.rules("gray", version: 0))
            async let second = b.http("PUT", "/v1/lanes", body: Self.rules("canary", version: 0))
            let statuses = try await [first.status, second.status].sorted()
            #expect(statuses == [200, 409])
            // Both nodes end on the winner's list, at version 1.
            #expect(await a.eventually(timeout: 3) { await Self.lanes(a).version == 1 })
            #expect(await b.eventually(timeout: 3) { await Self.lanes(b).version == 1 })
            #expect(await Self.lanes(a).lane == Self.lanes(b).lane)
        }
    }

    @Test("unconditional edits at once on two nodes both count: versions 1 and 2, one list in the end")
    func concurrentUnconditional() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let (a, b) = (cluster.nodes[0], cluster.nodes[1])
            #expect(await a.eventually { await a.clusterMembers().count == 2 })
            async let first = a.http("PUT", "/v1/lanes", body: Self.rules("gray"))
            async let second = b.http("PUT", "/v1/lanes", body: Self.rules("canary"))
            let versions = try await [first.json["version"] as? Int, second.json["version"] as? Int]
            #expect(versions.compactMap { $0 }.sorted() == [1, 2])
            #expect(await a.eventually(timeout: 3) { await Self.lanes(a).version == 2 })
            #expect(await b.eventually(timeout: 3) { await Self.lanes(b).version == 2 })
            #expect(await Self.lanes(a).lane == Self.lanes(b).lane)
        }
    }

    @Test("NATS down: a change is refused with 503 and nothing changes; reads still answer")
    func natsDown() async throws {
        try await ClusterFixture.with(nodes: ["n1"]) { cluster in
            let a = cluster.nodes[0]
            #expect(await a.eventually { await a.clusterMembers() == ["n1"] })
            #expect(try await a.http("PUT", "/v1/lanes", body: Self.rules("gray")).status == 200)
            await cluster.nats.stop()
            let refused = try await a.http("PUT", "/v1/lanes", body: Self.rules("canary"))
            #expect(refused.status == 503)
            #expect(refused.json["error"] as? String == "cluster_unavailable")
            #expect(await Self.lanes(a) == ("gray", 1))
        }
    }

    @Test("an empty bucket (a new NATS) is seeded with the rules a node already has")
    func seedsEmptyBucket() async throws {
        try await ClusterFixture.with(nodes: ["n1"]) { cluster in
            let a = cluster.nodes[0]
            #expect(await a.eventually { await a.clusterMembers() == ["n1"] })
            #expect(try await a.http("PUT", "/v1/lanes", body: Self.rules("gray")).status == 200)
            let client = try await cluster.nats.connect()
            let kv = try await client.jetStream().keyValue("\(cluster.clusterName)_lanes")
            try await kv.purge("rules")
            #expect(await a.eventually(timeout: 5) { (try? await kv.get("rules"))??.operation == .put })
            let entry = try await kv.get("rules")
            #expect(entry?.string.contains("\"gray\"") == true)
            await client.close()
        }
    }
}
