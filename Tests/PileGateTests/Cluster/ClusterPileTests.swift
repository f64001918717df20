import Foundation
import NATS
import NATSTestSupport
import NIOConcurrencyHelpers
import NIOCore
import PileGate
import PileSim
import Testing
import YKC

/// The cluster's pile features over a real nats-server, real pile sockets and real backend
/// WebSockets: the pile directory, commands and lookups from any node, one session per pile,
/// and piles of a dead node going offline.
@Suite("Cluster mode: piles are found, commanded and taken over across nodes", .serialized)
struct ClusterPileTests {
    @Test("a pile on node 1 is commanded, looked up, listed and kicked through node 2's REST API and WebSocket")
    func commandsAcrossNodes() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let (a, b) = (cluster.nodes[0], cluster.nodes[1])
            #expect(await b.eventually { await b.clusterMembers() == ["n1", "n2"] })
            let pile = try await cluster.pile("55010600000701", on: a)
            defer { pile.stopNow() }
            #expect(await b.eventually { await b.holder(of: "55010600000701") == "n1" })
            #expect(await a.holder(of: "55010600000701") == "n1")

            // REST on node 2: the pile on node 1 answers, with the same document as locally.
            let http = try await b.http("POST", "/v1/piles/55010600000701/commands/reboot", body: #"{"when":"immediately"}"#)
            #expect(http.status == 200, "\(http.body)")
            let reply = http.json["reply"] as? [String: Any]
            #expect(reply?["event"] as? String == "reboot_reply")
            #expect((reply?["data"] as? [String: Any])?["result"] as? String == "succeeded", "\(http.body)")
            // Checked arguments fail the same way, wherever the pile is.
            let bad = try await b.http("POST", "/v1/piles/55010600000701/commands/reboot", body: #"{"when":"later"}"#)
            #expect(bad.status == 400 && bad.json["error"] as? String == "invalid_args", "\(bad.body)")

            // The WebSocket command on node 2.
            let backend = try await TestBackend.connect(apiPort: b.apiPort)
            try await backend.subscribe(service: "ops", instance: "o1", events: ["pile_online"])
            backend.send(#"{"type":"command","requestId":"w1","pile":"55010600000701","command":"reboot","args":{"when":"immediately"}}"#)
            let w1 = try await backend.waitFor("result w1", timeout: 10) { $0["requestId"] as? String == "w1" }
            #expect(w1["ok"] as? Bool == true, "\(w1)")
            #expect(((w1["reply"] as? [String: Any])?["data"] as? [String: Any])?["result"] as? String == "succeeded")

            // Listed online from node 2, with its node.
            let page = try await b.http("GET", "/v1/piles?online=true")
            let listed = (page.json["piles"] as? [[String: Any]])?.first { ($0["pile"] as? [String: Any])?["id"] as? String == "55010600000701" }
            #expect(listed?["node"] as? String == "n1", "\(page.body)")
            let all = try await b.http("GET", "/v1/piles/55010600000701")
            #expect((all.json["pile"] as? [String: Any])?["online"] as? Bool == true)
            #expect(all.json["session"] != nil, "the holder's live view: \(all.body)")

            // A pile online nowhere: pile_offline at once, though the command's timeout is long.
            let started = Date()
            let offline = try await b.http("POST", "/v1/piles/55010600000799/commands/reboot?timeout=30", body: #"{"when":"immediately"}"#)
            #expect(offline.status == 404 && offline.json["error"] as? String == "pile_offline", "\(offline.body)")
            #expect(Date().timeIntervalSince(started) < 5)

            // Kicked through node 2: node 1 closes it and the directory forgets it everywhere.
            let kick = try await b.http("DELETE", "/v1/piles/55010600000701/connection")
            #expect(kick.status == 202 && kick.json["node"] as? String == "n1", "\(kick.body)")
            #expect(await b.eventually { await b.holder(of: "55010600000701") == nil })
            #expect(await a.eventually { a.gateway.directory.count == 0 })
            let gone = try await b.http("POST", "/v1/piles/55010600000701/commands/reboot", body: #"{"when":"immediately"}"#)
            #expect(gone.json["error"] as? String == "pile_offline", "\(gone.body)")
            await backend.close()
        }
    }

    @Test("the same pile logging in on node 2 closes its session on node 1 first: offline before online")
    func takeoverAcrossNodes() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let (a, b) = (cluster.nodes[0], cluster.nodes[1])
            #expect(await a.eventually { await a.clusterMembers() == ["n1", "n2"] })
            // Two services, one instance each, on different nodes: each gets every event of the
            // pile, wherever the pile is (backends see one gateway).
            let onA = try await TestBackend.connect(apiPort: a.apiPort)
            try await onA.subscribe(service: "ops-a", instance: "a1", events: ["pile_online", "pile_offline"])
            let onB = try await TestBackend.connect(apiPort: b.apiPort)
            try await onB.subscribe(service: "ops-b", instance: "b1", events: ["pile_online", "pile_offline"])
            for node in [a, b] { #expect(await node.eventually { await node.relayInstances().count == 2 }) }

            let first = try await cluster.pile("55010600000702", on: a)
            defer { first.stopNow() }
            try await onA.waitForEvent("pile_online")
            #expect(await b.eventually { await b.holder(of: "55010600000702") == "n1" })

            let second = try await cluster.pile("55010600000702", on: b)
            defer { second.stopNow() }
            let offline = try await onA.waitForEvent("pile_offline")
            #expect((offline["data"] as? [String: Any])?["reason"] as? String == "replaced_by_new_login", "\(offline)")
            let online = try await onB.waitForEvent("pile_online") { $0["node"] as? String == "n2" }
            // Node 1's pile_offline happened before node 2's pile_online.
            let off = try #require(offline["receivedAt"] as? String)
            let on = try #require(online["receivedAt"] as? String)
            #expect(off <= on, "offline \(off), online \(on)")
            // The old connection is closed; both nodes now point at node 2.
            _ = try await first.waitUntil(timeout: .seconds(5), "closed") { !$0.isLoggedIn }
            #expect(await a.eventually { await a.holder(of: "55010600000702") == "n2" })
            #expect(await b.holder(of: "55010600000702") == "n2")
            // Node 2 asked node 1, and node 1 closed its session on that request.
            #expect((try await a.clusterStats()["takeovers"] as? [String: Any])?["closed"] as? Int == 1)
            #expect((try await b.clusterStats()["takeovers"] as? [String: Any])?["asked"] as? Int == 1)
            // Node 1's late offline did not erase node 2's entry; a command from node 1 reaches node 2.
            let r = try await a.http("POST", "/v1/piles/55010600000702/commands/reboot", body: #"{"when":"immediately"}"#)
            #expect(r.status == 200, "\(r.body)")
            // Each service saw the pile's three events once: online on n1, offline on n1, online on
            // n2. The instance on n1 gets them in that order (n2's online is relayed after n1 closed
            // its session); the gateways' receivedAt orders them for every instance.
            func seen(_ backend: TestBackend) -> [String] {
                backend.events.map { "\($0["event"] as? String ?? "?")@\($0["node"] as? String ?? "?")" }
            }
            try await onA.waitForEvent("pile_online") { $0["node"] as? String == "n2" }
            #expect(seen(onA) == ["pile_online@n1", "pile_offline@n1", "pile_online@n2"])
            // The instance on n2 gets them in that order too: n1 answered the takeover only once
            // that instance had acknowledged n1's pile_offline.
            #expect(seen(onB) == ["pile_online@n1", "pile_offline@n1", "pile_online@n2"])
            #expect((try await a.clusterStats()["takeovers"] as? [String: Any])?["unacknowledged"] as? Int == 0)
            await onA.close()
            await onB.close()
        }
    }

    @Test("a backend on the new node, still holding the pile's last event, gets the old session's pile_offline before the new pile_online")
    func takeoverWaitsForTheOfflineAck() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let (a, b) = (cluster.nodes[0], cluster.nodes[1])
            #expect(await a.eventually { await a.clusterMembers() == ["n1", "n2"] })
            // One instance, on node 2, one event in flight at a time. Node 1 and node 2 each keep
            // their own credit for it, so the two sessions' events race unless node 1 waits.
            let backend = try await TestBackend.connect(apiPort: b.apiPort, autoAck: false)
            try await backend.subscribe(service: "ops", instance: "o1", events: ["pile_online", "pile_offline"], maxInFlight: 1)
            for node in [a, b] { #expect(await node.eventually { await node.relayInstances().count == 1 }) }

            let first = try await cluster.pile("55010600000703", on: a)
            defer { first.stopNow() }
            // Node 1's pile_online, not acknowledged yet: the instance's one credit is taken.
            let held = try await backend.waitForEvent("pile_online")
            let heldId = try #require(held["id"] as? String)
            #expect(await b.eventually { await b.holder(of: "55010600000703") == "n1" })

            // The pile logs in again, on node 2, while the backend still works on that event.
            let login = Task { try await cluster.pile("55010600000703", on: b) }
            try await Task.sleep(for: .milliseconds(200))
            backend.autoAck.withLockedValue { $0 = true }
            backend.send(#"{"type":"ack","id":"\#(heldId)"}"#)
            let second = try await login.value
            defer { second.stopNow() }
            try await backend.waitForEvent("pile_online") { $0["node"] as? String == "n2" }
            let seen = backend.events.map { "\($0["event"] as? String ?? "?")@\($0["node"] as? String ?? "?")" }
            #expect(seen == ["pile_online@n1", "pile_offline@n1", "pile_online@n2"])
            let takeovers = try await a.clusterStats()["takeovers"] as? [String: Any]
            #expect(takeovers?["closed"] as? Int == 1 && takeovers?["unacknowledged"] as? Int == 0, "\(String(describing: takeovers))")
            await backend.close()
        }
    }

    @Test("the piles of a node that dies show offline within the node timeout, and pile_offline node_lost is sent once")
    func piles_of_a_dead_node() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let (a, b) = (cluster.nodes[0], cluster.nodes[1])
            let backendA = try await TestBackend.connect(apiPort: a.apiPort)
            try await backendA.subscribe(service: "ops", instance: "a1", events: ["pile_offline"])
            let backendB = try await TestBackend.connect(apiPort: b.apiPort)
            try await backendB.subscribe(service: "ops", instance: "b1", events: ["pile_offline"])
            // A "node" that is only a NATS client: it beats and writes its pile to the directory,
            // then vanishes without leaving, as a node killed with -9 does.
            let ghost = try await cluster.nats.connect()
            let subjects = ClusterSubjects(cluster: cluster.clusterName)
            let beat = Array(try JSONEncoder().encode(ClusterHeartbeat(node: "ghost", piles: 1, api: nil, startedAt: 42)))
            let beating = Task {
                while !Task.isCancelled {
                    try? ghost.publish(beat, to: subjects.heartbeat(node: "ghost"))
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            #expect(await a.eventually { await a.clusterMembers() == ["ghost", "n1", "n2"] })
            let kv = try await ghost.jetStream().keyValue(subjects.resource("piles"))
            let entry = ClusterPileEntry(node: "ghost", incarnation: 42, since: Date().timeIntervalSince1970, address: "10.0.0.9:5000", lane: "", connection: 7)
            try await kv.put("55010600000703", ByteBuffer(bytes: try JSONEncoder().encode(entry)))
            @Sendable func listed(_ node: AssembledGateway) async -> [String] {
                let page = try? await node.http("GET", "/v1/piles?online=true")
                return ((page?.json["piles"] as? [[String: Any]]) ?? []).compactMap { $0["node"] as? String }
            }
            #expect(await a.eventually { await listed(a) == ["ghost"] })
            #expect(await b.eventually { await listed(b) == ["ghost"] })
            // The ghost holds the pile but answers nothing: no responders, pile_offline at once.
            let command = try await b.http("POST", "/v1/piles/55010600000703/commands/reboot", body: #"{"when":"immediately"}"#)
            #expect(command.json["error"] as? String == "pile_offline", "\(command.body)")
            // Now it takes requests and never answers (stuck, or dying mid-request): a bounded
            // node_unreachable (the command's timeout + 2 s), not a hang.
            let sink = try await ghost.subscribe(to: subjects.node("ghost", "command"))
            let started = Date()
            let stuck = try await b.http("POST", "/v1/piles/55010600000703/commands/reboot?timeout=0.2", body: #"{"when":"immediately"}"#)
            #expect(stuck.status == 502 && stuck.json["error"] as? String == "node_unreachable", "\(stuck.body)")
            #expect(Date().timeIntervalSince(started) < 8)
            sink.unsubscribe()

            beating.cancel()
            await beating.value
            await ghost.close()
            #expect(await a.eventually(timeout: 5) { await listed(a).isEmpty })
            #expect(await b.eventually(timeout: 5) { await listed(b).isEmpty })
            // One node (the cleaner, n1) announced it, once, to one instance of the service (a1 on
            // n1 or b1 on n2, whichever the pile hashes to: backends see one gateway).
            @Sendable func offline() -> [[String: Any]] {
                (backendA.messages + backendB.messages).filter { $0["event"] as? String == "pile_offline" }
            }
            #expect(await a.eventually(timeout: 5) { !offline().isEmpty })
            let lost = try #require(offline().first)
            #expect((lost["data"] as? [String: Any])?["reason"] as? String == "node_lost", "\(lost)")
            #expect(lost["pile"] as? String == "55010600000703")
            try await Task.sleep(for: .seconds(1.5))
            #expect(offline().count == 1, "\(offline())")
            // And the bucket no longer has it.
            let reader = try await cluster.nats.connect()
            #expect(try await reader.jetStream().keyValue(subjects.resource("piles")).get("55010600000703") == nil)
            await reader.close()
            await backendA.close()
            await backendB.close()
        }
    }

    @Test("a node whose heartbeats come late, but come back within another node timeout, keeps its piles: no node_lost")
    func late_node_keeps_its_piles() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let a = cluster.nodes[0]
            let backend = try await TestBackend.connect(apiPort: a.apiPort)
            try await backend.subscribe(service: "ops", instance: "a1", events: ["pile_offline"])
            // A stand-in node, as in the test above, whose heartbeats pause, as a saturated
            // machine's do, for longer than the node timeout (1 s here).
            let late = try await cluster.nats.connect()
            let subjects = ClusterSubjects(cluster: cluster.clusterName)
            let beat = Array(try JSONEncoder().encode(ClusterHeartbeat(node: "late", piles: 1, api: nil, startedAt: 43)))
            let paused = NIOLockedValueBox(false)
            let beating = Task {
                while !Task.isCancelled {
                    if !paused.withLockedValue({ $0 }) { try? late.publish(beat, to: subjects.heartbeat(node: "late")) }
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            #expect(await a.eventually { await a.clusterMembers() == ["late", "n1", "n2"] })
            let kv = try await late.jetStream().keyValue(subjects.resource("piles"))
            let entry = ClusterPileEntry(node: "late", incarnation: 43, since: Date().timeIntervalSince1970, address: "10.0.0.9:5001", lane: "", connection: 8)
            try await kv.put("55010600000705", ByteBuffer(bytes: try JSONEncoder().encode(entry)))
            @Sendable func listed() async -> [String] {
                let page = try? await a.http("GET", "/v1/piles?online=true")
                return ((page?.json["piles"] as? [[String: Any]]) ?? []).compactMap { $0["node"] as? String }
            }
            #expect(await a.eventually { await listed() == ["late"] })

            paused.withLockedValue { $0 = true }
            // Taken for dead: its pile reads offline at once…
            #expect(await a.eventually { await a.clusterMembers() == ["n1", "n2"] })
            #expect(await listed().isEmpty)
            // …and it beats again before another node timeout has passed.
            paused.withLockedValue { $0 = false }
            #expect(await a.eventually { await a.clusterMembers() == ["late", "n1", "n2"] })
            #expect(await a.eventually { await listed() == ["late"] })
            try await Task.sleep(for: .seconds(2.5))
            #expect(await listed() == ["late"])
            #expect(try await kv.get("55010600000705") != nil)
            #expect(backend.messages.filter { $0["event"] as? String == "pile_offline" }.isEmpty, "\(backend.messages)")
            #expect((try await a.clusterStats()["directory"] as? [String: Any])?["cleaned"] as? Int == 0)

            // Silent for good: announced once the second timeout has passed.
            beating.cancel()
            await beating.value
            let started = Date()
            #expect(await a.eventually(timeout: 8) { backend.messages.contains { $0["event"] as? String == "pile_offline" } })
            #expect(Date().timeIntervalSince(started) >= 1.5, "announced after \(Date().timeIntervalSince(started)) s")
            await late.close()
            await backend.close()
        }
    }

    @Test("stats and metrics show the cluster: nodes, piles per node, the directory, NATS")
    func statsAndMetrics() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let (a, b) = (cluster.nodes[0], cluster.nodes[1])
            let pile = try await cluster.pile("55010600000704", on: b)
            defer { pile.stopNow() }
            #expect(await a.eventually { await a.holder(of: "55010600000704") == "n2" })
            #expect(await a.eventually {
                let nodes = ((try? await a.clusterStats())?["nodes"] as? [[String: Any]]) ?? []
                return nodes.first { $0["node"] as? String == "n2" }?["piles"] as? Int == 1
            })
            let stats = try await a.clusterStats()
            #expect((stats["directory"] as? [String: Any])?["entries"] as? Int == 1, "\(stats)")
            let metrics = try await a.http("GET", "/metrics").body
            #expect(metrics.contains("pilegate_cluster_nodes 2"), "\(metrics.split(separator: "\n").filter { $0.contains("cluster") })")
            #expect(metrics.contains("pilegate_cluster_nats_connected 1"))
            #expect(metrics.contains(#"pilegate_cluster_node_piles{node="n2"} 1"#))
            #expect(metrics.contains("pilegate_cluster_directory_entries 1"))
        }
    }
}
