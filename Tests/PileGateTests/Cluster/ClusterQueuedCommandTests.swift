import Foundation
import PileGate
import PileSim
import Testing
import YKC

/// Queued commands in a cluster (docs/CLUSTER.md, "Queued commands"), over a real nats-server,
/// real pile sockets and a real backend WebSocket: a command queued on node A for an offline pile
/// reaches the pile when it logs in on node B — also when node A restarts in between — and its
/// `command_result` reaches the billing backend connected to node B.
@Suite("Cluster mode: queued commands reach piles that log in on another node", .serialized)
struct ClusterQueuedCommandTests {
    static let reboot = #"{"when":"immediately"}"#

    /// Queues `reboot` on `node` for `pile` (offline everywhere): the queued id.
    static func queue(_ pile: String, on node: AssembledGateway) async throws -> String {
        let queued = try await node.http("POST", "/v1/piles/\(pile)/commands/reboot?deliverWithin=600", body: reboot)
        #expect(queued.status == 202, "\(queued.body)")
        return try #require(queued.json["id"] as? String)
    }

    static func queuedCount(_ pile: String, on node: AssembledGateway) async -> Int? {
        try? await node.http("GET", "/v1/piles/\(pile)/commands/queued").json["count"] as? Int
    }

    /// Waits for the `command_result` of `id` and checks the pile replied.
    static func expectReplied(_ backend: TestBackend, id: String, pile: String) async throws {
        let result = try await backend.waitFor("command_result \(id)", timeout: 20) {
            $0["event"] as? String == "command_result" && $0["id"] as? String == id
        }
        let data = result["data"] as? [String: Any] ?? [:]
        #expect(result["pile"] as? String == pile)
        #expect(data["outcome"] as? String == "replied", "\(result)")
        #expect(((data["reply"] as? [String: Any])?["data"] as? [String: Any])?["result"] as? String == "succeeded", "\(result)")
    }

    @Test("queued on node A for an offline pile, the pile logs in on node B: it gets the command once, the result is published")
    func queuedOnAPileOnB() async throws {
        try await ClusterFixture.with(nodes: ["a", "b"]) { cluster in
            let (a, b) = (cluster.nodes[0], cluster.nodes[1])
            #expect(await b.eventually { await b.clusterMembers() == ["a", "b"] })
            let backend = try await TestBackend.connect(apiPort: b.apiPort)
            try await backend.subscribe(service: "billing", instance: "b1", events: ["command_result", "command_expired"])
            let first = try await Self.queue("55010600000901", on: a)
            let second = try await Self.queue("55010600000901", on: a)
            #expect(await Self.queuedCount("55010600000901", on: a) == 2)

            let pile = try await cluster.pile("55010600000901", on: b)
            defer { pile.stopNow() }
            _ = try await pile.waitForFrame(code: 0x92, timeout: .seconds(10))
            try await Self.expectReplied(backend, id: first, pile: "55010600000901")
            try await Self.expectReplied(backend, id: second, pile: "55010600000901")
            #expect(await a.eventually { await Self.queuedCount("55010600000901", on: a) == 0 })
            // In queue order, each once (node B's own queue never held them).
            try await Task.sleep(for: .milliseconds(1500))
            #expect(await pile.receivedFrames(code: 0x92).count == 2)
            let results = backend.messages.filter { $0["event"] as? String == "command_result" }.compactMap { $0["id"] as? String }
            #expect(results == [first, second], "\(results)")
            await backend.close()
        }
    }

    @Test("a command in node A's SQLite, node A restarted while the pile logs in on node B: delivered once A is back")
    func queuedOnARestartedPileOnB() async throws {
        try await ClusterFixture.with(nodes: ["a", "b"]) { cluster in
            let a = cluster.nodes[0]
            let b = cluster.nodes[1]
            #expect(await b.eventually { await b.clusterMembers() == ["a", "b"] })
            let backend = try await TestBackend.connect(apiPort: b.apiPort)
            try await backend.subscribe(service: "billing", instance: "b1", events: ["command_result", "command_expired"])
            let id = try await Self.queue("55010600000902", on: a)

            // Node A goes away with the command on disk; the pile logs in on node B meanwhile.
            let piles = PileBox()
            defer { piles.pile?.stopNow() }
            let restarted = try await cluster.restart(a, as: "a") {
                let pile = try await cluster.pile("55010600000902", on: b)
                piles.pile = pile
                try await Task.sleep(for: .milliseconds(1500))
                #expect(await pile.receivedFrames(code: 0x92).isEmpty)
            }
            let pile = try #require(piles.pile)
            _ = try await pile.waitForFrame(code: 0x92, timeout: .seconds(20))
            try await Self.expectReplied(backend, id: id, pile: "55010600000902")
            #expect(await restarted.eventually { await Self.queuedCount("55010600000902", on: restarted) == 0 })
            try await Task.sleep(for: .milliseconds(1500))
            #expect(await pile.receivedFrames(code: 0x92).count == 1)
            await backend.close()
        }
    }
}

/// The pile a restart's `whileDown` logged in, for the rest of the test.
private final class PileBox: @unchecked Sendable {
    var pile: SimulatedPile?
}
