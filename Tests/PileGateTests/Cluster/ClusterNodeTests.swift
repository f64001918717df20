import Foundation
import NATSTestSupport
import PileGate
import Testing

@Suite("Cluster mode: nodes find each other through a real nats-server", .serialized)
struct ClusterNodeTests {
    @Test("two nodes see each other in /v1/stats, with their piles and API addresses")
    func twoNodes() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let a = cluster.nodes[0]
            let b = cluster.nodes[1]
            #expect(await a.eventually { await a.clusterMembers() == ["n1", "n2"] })
            #expect(await b.eventually { await b.clusterMembers() == ["n1", "n2"] })
            let stats = try await a.clusterStats()
            #expect(stats["node"] as? String == "n1")
            #expect(stats["name"] as? String == cluster.clusterName)
            #expect(stats["nats"] as? String == "connected")
            let other = (stats["nodes"] as? [[String: Any]])?.first { $0["node"] as? String == "n2" }
            #expect(other?["api"] as? String == "127.0.0.1:\(b.apiPort)")
            #expect(other?["piles"] as? Int == 0)
        }
    }

    @Test("a node that shuts down leaves at once, before the node timeout")
    func leaveOnShutdown() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let a = cluster.nodes[0]
            #expect(await a.eventually { await a.clusterMembers() == ["n1", "n2"] })
            await cluster.stop(cluster.nodes[1])
            // The node timeout is 1 s; the leaving heartbeat makes it much faster, but a loaded
            // machine may need longer, so only the outcome is asserted here.
            #expect(await a.eventually(timeout: 5) { await a.clusterMembers() == ["n1"] })
        }
    }

    @Test("a node whose NATS connection dies is taken as dead after the node timeout")
    func deathBySilence() async throws {
        try await ClusterFixture.with(nodes: ["n1"]) { cluster in
            let a = cluster.nodes[0]
            // A second "node" that is only a NATS client announcing itself, then vanishing
            // without a leaving heartbeat, as a node killed with -9 does.
            let ghost = try await cluster.nats.connect()
            let beat = ClusterHeartbeat(node: "ghost", piles: 7, api: nil, startedAt: 1)
            let subjects = ClusterSubjects(cluster: cluster.clusterName)
            let payload = Array(try JSONEncoder().encode(beat))
            let beating = Task {
                while !Task.isCancelled {
                    try? ghost.publish(payload, to: subjects.heartbeat(node: "ghost"))
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            #expect(await a.eventually { await a.clusterMembers() == ["ghost", "n1"] })
            beating.cancel()
            await beating.value
            await ghost.close()
            #expect(await a.eventually(timeout: 5) { await a.clusterMembers() == ["n1"] })
        }
    }

    @Test("NATS down at start: the node serves anyway and joins when NATS comes up")
    func natsLate() async throws {
        try await ClusterFixture.with { cluster in
            await cluster.nats.stop()
            let a = try await cluster.startNode("n1")
            let health = try await a.http("GET", "/healthz")
            #expect(health.status == 200)
            #expect(try await a.clusterStats()["nats"] as? String == "connecting")
            try await cluster.nats.start()
            #expect(await a.eventually(timeout: 10) { await a.clusterMembers() == ["n1"] })
        }
    }

    @Test(
        "cluster settings are checked before anything starts",
        arguments: [
            ("natsURL", "http://x:1"), ("clusterName", "a.b"), ("clusterName", ""), ("clusterHeartbeatInterval", "0"),
        ])
    func invalidSettings(key: String, value: String) {
        var env = ["PILEGATE_NATS_URL": "nats://127.0.0.1:4222"]
        env[GatewayConfiguration.environmentName(for: key)] = value
        #expect(throws: ConfigurationError.self) { _ = try GatewayConfiguration.load(file: nil, environment: env) }
    }

    @Test("in cluster mode the node id must be a subject token; the timeout must outlast two heartbeats")
    func nodeIdAndTimeout() throws {
        var config = GatewayConfiguration()
        config.natsURL = "nats://127.0.0.1:4222"
        config.nodeId = "gw.01"
        #expect(throws: ConfigurationError.self) { _ = try ClusterNode(config: config, logger: .init(label: "t")) { (0, nil) } }
        config.nodeId = "gw-01"
        config.clusterHeartbeatInterval = 5
        config.clusterNodeTimeout = 6
        #expect(throws: ConfigurationError.self) { try config.validate() }
    }
}
