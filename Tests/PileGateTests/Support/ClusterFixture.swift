import Foundation
import NATSTestSupport
import PileGate
import PileSim
import YKC

/// A cluster for one test: a real nats-server (JetStream on, temporary store) and gateway nodes
/// built by `GatewayAssembly` on ephemeral loopback ports, all in cluster mode with fast
/// heartbeats. Everything is stopped and removed afterwards.
final class ClusterFixture: @unchecked Sendable {
    let nats: NATSTestServer
    fileprivate(set) var nodes: [AssembledGateway] = []
    /// A fresh cluster name per fixture, so tests sharing a server could not see each other.
    let clusterName = "t" + UUID().uuidString.prefix(8).lowercased()

    private init(nats: NATSTestServer) {
        self.nats = nats
    }

    /// Cluster-mode settings for node `id`, on top of the test defaults.
    func config(node id: String, _ configure: (inout GatewayConfiguration) -> Void = { _ in }) -> GatewayConfiguration {
        AssembledGateway.config { c in
            c.nodeId = id
            c.natsURL = nats.url
            c.clusterName = clusterName
            c.clusterHeartbeatInterval = 0.1
            c.clusterNodeTimeout = 1
            configure(&c)
        }
    }

    /// Starts node `id` and keeps it for clean-up.
    @discardableResult
    func startNode(_ id: String, _ configure: (inout GatewayConfiguration) -> Void = { _ in }) async throws -> AssembledGateway {
        let node = try await AssembledGateway.start(config(node: id, configure))
        nodes.append(node)
        return node
    }

    /// Stops `node` (a drained shutdown) and forgets it.
    func stop(_ node: AssembledGateway) async {
        await node.stop()
        nodes.removeAll { $0 === node }
    }

    /// `natsConfiguration`: the nats-server's config file (auth, TLS), as `NATSTestServer` takes it.
    static func with<T>(
        nodes ids: [String] = [], natsConfiguration: String? = nil, _ body: (ClusterFixture) async throws -> T
    ) async throws -> T {
        let fixture = ClusterFixture(nats: try await NATSTestServer(configuration: natsConfiguration))
        do {
            for id in ids { try await fixture.startNode(id) }
            let result = try await body(fixture)
            await fixture.tearDown()
            return result
        } catch {
            await fixture.tearDown()
            throw error
        }
    }

    private func tearDown() async {
        for node in nodes { await node.stop() }
        nodes = []
        await nats.stop()
        nats.removeFiles()
    }
}

extension AssembledGateway {
    /// `/v1/stats` → `extensions.cluster`, as a backend or an operator reads it.
    func clusterStats() async throws -> [String: Any] {
        let answer = try await http("GET", "/v1/stats")
        return (answer.json["extensions"] as? [String: Any])?["cluster"] as? [String: Any] ?? [:]
    }

    /// The node ids in this node's view of the cluster.
    func clusterMembers() async -> [String] {
        let nodes = ((try? await clusterStats())?["nodes"] as? [[String: Any]]) ?? []
        return nodes.compactMap { $0["node"] as? String }.sorted()
    }
}

extension ClusterFixture {
    /// A simulated pile with fast timers logged in to `node`'s pile port, not reconnecting.
    func pile(_ id: String, on node: AssembledGateway) async throws -> SimulatedPile {
        var c = SimulatedPileConfig.fast(pileID: PileID(id) ?? PileID(raw: 0), gunCount: 2)
        c.reconnect = .never
        c.requestBillingModel = false
        let pile = try await SimulatedPile.connect(to: node.gateway.pilePort ?? 0, c)
        try await pile.waitForLogin()
        return pile
    }
}

extension AssembledGateway {
    /// The node `GET /v1/piles/{id}` on this node says holds the pile (nil: offline or unknown).
    func holder(of pile: String) async -> String? {
        (try? await http("GET", "/v1/piles/\(pile)"))?.json["node"] as? String
    }
}

extension ClusterFixture {
    /// Stops `node` (a drained shutdown) keeping its data directory, runs `whileDown`, and starts
    /// node `id` again on it: the same node, restarted.
    func restart(
        _ node: AssembledGateway, as id: String, whileDown: () async throws -> Void = {}
    ) async throws -> AssembledGateway {
        await node.gateway.shutdown()
        nodes.removeAll { $0 === node }
        do {
            try await whileDown()
        } catch {
            try? FileManager.default.removeItem(atPath: node.dataDirectory)
            throw error
        }
        return try await startNode(id) { $0.dataDirectory = node.dataDirectory }
    }
}
