import Foundation
import NATS
import NIOCore
@testable import PileGate
import Testing
import YKC

/// Nodes tell each other their pile directory writes in batches (`ClusterDirectoryChanges`) and
/// apply them by revision, in whatever order they come; a missed or damaged batch makes a node
/// load the bucket again; while a member of an earlier version is in the cluster the nodes
/// follow the bucket's own watch.
@Suite("Cluster pile directory changes", .timeLimit(.minutes(2)))
struct ClusterDirectoryChangesTests {
    static let pile = PileID("55010600000801") ?? PileID(raw: 0)
    static func entry(_ node: String, connection: UInt64) -> ClusterPileEntry {
        ClusterPileEntry(node: node, incarnation: 1_764_590_000.25, since: 1_764_590_012.5, address: "127.0.0.7:40122", lane: "gray", connection: connection)
    }

    @Test("a batch reads back as written; a cut, a wrong version or a count beyond the bytes reads as nothing")
    func framing() throws {
        let batch = ClusterDirectoryChanges(
            origin: "节点-1", incarnation: 1_764_590_000.125, sequence: 7,
            changes: [.put(Self.pile, Self.entry("节点-1", connection: 3), revision: 41), .delete(PileID(raw: 0x55_0106_0000_0802), revision: 42)])
        let bytes = batch.encoded()
        #expect(ClusterDirectoryChanges(decoding: bytes) == batch)
        #expect(bytes.readableBytes <= batch.changes.map(ClusterDirectoryChanges.size(of:)).reduce(40, +))
        for cut in [1, 10, bytes.readableBytes - 1] {
            #expect(ClusterDirectoryChanges(decoding: bytes.getSlice(at: 0, length: cut) ?? ByteBuffer()) == nil, "cut at \(cut)")
        }
        var longer = bytes
        longer.writeInteger(UInt8(0))
        #expect(ClusterDirectoryChanges(decoding: longer) == nil)
        var version = bytes
        version.setInteger(UInt8(9), at: 0)
        #expect(ClusterDirectoryChanges(decoding: version) == nil)
        var count = ByteBuffer()
        count.writeInteger(ClusterDirectoryChanges.version)
        count.writeInteger(UInt16(1))
        count.writeString("x")
        count.writeInteger(UInt64(0))
        count.writeInteger(UInt64(1))
        count.writeInteger(UInt32.max)
        #expect(ClusterDirectoryChanges(decoding: count) == nil)
    }

    @Test("changes applied in any order leave the mirror as the bucket's order does")
    func anyOrder() {
        // Node a wrote the pile (1), the cleaner deleted it when a died (2), node b wrote it (3).
        let moved: [ClusterDirectoryChanges.Change] = [
            .put(Self.pile, Self.entry("a", connection: 1), revision: 1), .delete(Self.pile, revision: 2),
            .put(Self.pile, Self.entry("b", connection: 2), revision: 3),
        ]
        // Node a wrote it, the cleaner deleted it: the late put must not bring it back.
        let gone = Array(moved.prefix(2))
        for (changes, expected) in [(moved, ClusterPileDirectory.Held(pile: Self.pile, entry: Self.entry("b", connection: 2), revision: 3)), (gone, nil)] {
            for order in Self.permutations(changes) {
                var mirror = ClusterDirectoryMirror()
                for change in order { _ = mirror.apply(change, now: 0) }
                #expect(mirror.held[Self.pile] == expected, "\(order)")
            }
        }
        // A put reports itself only when it took effect.
        var mirror = ClusterDirectoryMirror()
        #expect(mirror.apply(moved[2], now: 0) != nil)
        #expect(mirror.apply(moved[0], now: 0) == nil)
        // Tombstones go after a while; the bucket is loaded again long before a put could be that late.
        _ = mirror.apply(.delete(PileID(raw: 9), revision: 5), now: 10)
        mirror.prune(before: 11)
        #expect(mirror.tombstones.isEmpty)
    }

    static func permutations<T>(_ items: [T]) -> [[T]] {
        guard items.count > 1 else { return [items] }
        return items.indices.flatMap { i -> [[T]] in
            var rest = items
            let first = rest.remove(at: i)
            return permutations(rest).map { [first] + $0 }
        }
    }

    @Test("nodes follow each other by batches; a skipped sequence or a damaged batch loads the bucket again and following goes on")
    func gapsReload() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let (a, b) = (cluster.nodes[0], cluster.nodes[1])
            @Sendable func directory(_ node: AssembledGateway) async -> [String: Any] {
                ((try? await node.clusterStats())?["directory"] as? [String: Any]) ?? [:]
            }
            #expect(await a.eventually { await directory(a)["following"] as? String == "changes" })
            let first = try await cluster.pile("55010600000811", on: b)
            defer { first.stopNow() }
            #expect(await a.eventually { await a.holder(of: "55010600000811") == "n2" })
            #expect(await a.eventually { (await directory(a)["batchesReceived"] as? Int ?? 0) >= 1 })
            let loads = try #require(await directory(a)["loads"] as? Int)

            // An origin whose batches jump from 1 to 3: batch 2 was lost.
            let other = try await cluster.nats.connect()
            let subjects = ClusterSubjects(cluster: cluster.clusterName)
            for sequence: UInt64 in [1, 3] {
                let batch = ClusterDirectoryChanges(origin: "n9", incarnation: 5, sequence: sequence, changes: [])
                try other.publish(batch.encoded(), to: subjects.directoryChanges(node: "n9"))
            }
            #expect(await a.eventually { (await directory(a)["loads"] as? Int ?? 0) > loads })
            #expect(await directory(a)["gaps"] as? Int ?? 0 >= 1)
            #expect(await a.eventually { await directory(a)["following"] as? String == "changes" })
            // Reloaded from the bucket, and following again.
            #expect(await a.holder(of: "55010600000811") == "n2")
            let second = try await cluster.pile("55010600000812", on: b)
            defer { second.stopNow() }
            #expect(await a.eventually { await a.holder(of: "55010600000812") == "n2" })

            // Bytes that are not a batch.
            let before = try #require(await directory(a)["loads"] as? Int)
            try other.publish(ByteBuffer(string: "not a batch"), to: subjects.directoryChanges(node: "n9"))
            #expect(await a.eventually { (await directory(a)["loads"] as? Int ?? 0) > before })
            // A pile that leaves is gone from the other node's view.
            second.stopNow()
            #expect(await a.eventually { await a.holder(of: "55010600000812") == nil })
            #expect(await a.holder(of: "55010600000811") == "n2")
            await other.close()
        }
    }

    @Test("with a member of an earlier version the nodes follow the bucket's watch, and go back to batches when it leaves")
    func earlierVersion() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let (a, b) = (cluster.nodes[0], cluster.nodes[1])
            @Sendable func following(_ node: AssembledGateway) async -> String? {
                ((try? await node.clusterStats())?["directory"] as? [String: Any])?["following"] as? String
            }
            #expect(await a.eventually { await following(a) == "changes" })
            // An earlier version: a heartbeat without `directoryChanges`, and its piles written
            // only to the bucket.
            let old = try await cluster.nats.connect()
            let subjects = ClusterSubjects(cluster: cluster.clusterName)
            let beat = Array(try JSONEncoder().encode(ClusterHeartbeat(node: "old", piles: 1, api: nil, startedAt: 42)))
            let beating = Task {
                while !Task.isCancelled {
                    try? old.publish(beat, to: subjects.heartbeat(node: "old"))
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            #expect(await a.eventually { await following(a) == "bucket" })
            #expect(await b.eventually { await following(b) == "bucket" })
            let kv = try await old.jetStream().keyValue(subjects.resource("piles"))
            let entry = ClusterPileEntry(node: "old", incarnation: 42, since: Date().timeIntervalSince1970, address: "10.0.0.9:5000", lane: "", connection: 7)
            try await kv.put("55010600000821", ByteBuffer(bytes: try JSONEncoder().encode(entry)))
            // Listed from the directory (a lookup of one pile would ask the old node, which is only a stand-in).
            #expect(await a.eventually {
                let page = try? await a.http("GET", "/v1/piles?online=true")
                return ((page?.json["piles"] as? [[String: Any]]) ?? []).contains {
                    ($0["pile"] as? [String: Any])?["id"] as? String == "55010600000821" && $0["node"] as? String == "old"
                }
            })
            // The new nodes' own writes still reach each other.
            let pile = try await cluster.pile("55010600000822", on: b)
            defer { pile.stopNow() }
            #expect(await a.eventually { await a.holder(of: "55010600000822") == "n2" })

            // The old node leaves (a drained shutdown): back to batches, the view unchanged.
            beating.cancel()
            await beating.value
            let leaving = Array(try JSONEncoder().encode(ClusterHeartbeat(node: "old", piles: 0, api: nil, startedAt: 42, leaving: true)))
            try old.publish(leaving, to: subjects.heartbeat(node: "old"))
            try await old.flush()
            await old.close()
            #expect(await a.eventually { await following(a) == "changes" })
            #expect(await a.holder(of: "55010600000822") == "n2")
            pile.stopNow()
            #expect(await a.eventually { await a.holder(of: "55010600000822") == nil })
        }
    }
}
