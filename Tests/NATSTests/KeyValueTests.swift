import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import NATS
import NATSTestSupport

extension RealServerTests {
    @Suite("KV buckets against a real nats-server", .timeLimit(.minutes(1)))
    struct KeyValueTests {
        @Test("create bucket, put, get, delete, purge; revisions grow")
        func basics() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let js = client.jetStream()
                let kv = try await js.createKeyValue(KeyValueConfiguration(bucket: "lanes", history: 5))
                #expect(try await kv.get("rule.a") == nil)
                let r1 = try await kv.put("rule.a", "v1")
                let r2 = try await kv.put("rule.a", "v2")
                #expect(r2 > r1)
                let entry = try #require(try await kv.get("rule.a"))
                #expect(entry.string == "v2" && entry.revision == r2 && entry.operation == .put)
                #expect(entry.key == "rule.a" && entry.bucket == "lanes")
                try await kv.put("rule.b", "b")
                #expect(Set(try await kv.keys()) == ["rule.a", "rule.b"])
                try await kv.delete("rule.a")
                #expect(try await kv.get("rule.a") == nil)
                #expect(try await kv.keys() == ["rule.b"])
                try await kv.purge("rule.b")
                #expect(try await kv.get("rule.b") == nil)
                #expect(try await kv.keys().isEmpty)

                // The bucket can be opened by name; a missing one is a typed error.
                let again = try await js.keyValue("lanes")
                try await again.put("x", "1")
                #expect(try await kv.get("x")?.string == "1")
                await #expect(throws: KeyValueError.bucketNotFound("nope")) { _ = try await js.keyValue("nope") }
                await #expect(throws: KeyValueError.invalidKey("bad key")) { try await kv.put("bad key", "x") }
                await #expect(throws: KeyValueError.invalidKey(".dot")) { try await kv.put(".dot", "x") }
                try await js.deleteKeyValue("lanes")
                await client.close()
            }
        }

        @Test("compare-and-set: a stale revision and create on an existing key are typed conflicts")
        func compareAndSet() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let kv = try await client.jetStream().createKeyValue(KeyValueConfiguration(bucket: "cas"))
                let created = try await kv.create("pile.1", "owner=A")
                await #expect(throws: KeyValueError.keyExists(key: "pile.1")) { try await kv.create("pile.1", "owner=B") }

                // Two writers read the same revision; the second to write loses, typed, and nothing is lost.
                let read = try #require(try await kv.get("pile.1")).revision
                #expect(read == created)
                let winner = try await kv.update("pile.1", "owner=A v2", revision: read)
                await #expect(throws: KeyValueError.wrongLastRevision(key: "pile.1", expected: read)) {
                    try await kv.update("pile.1", "owner=B v2", revision: read)
                }
                #expect(try await kv.get("pile.1")?.string == "owner=A v2")
                // The loser retries with the fresh revision.
                try await kv.update("pile.1", "owner=B v3", revision: winner)
                #expect(try await kv.get("pile.1")?.string == "owner=B v3")

                // Revision 0 means "must not exist"; create works again after a delete.
                await #expect(throws: KeyValueError.wrongLastRevision(key: "pile.1", expected: 0)) {
                    try await kv.update("pile.1", "x", revision: 0)
                }
                try await kv.delete("pile.1")
                try await kv.create("pile.1", "owner=C")
                #expect(try await kv.get("pile.1")?.string == "owner=C")

                // Concurrent creates of one key: exactly one wins.
                let results = await withTaskGroup(of: Bool.self) { group in
                    for i in 0..<8 {
                        group.addTask { (try? await kv.create("race", "writer \(i)")) != nil }
                    }
                    return await group.reduce(into: [Bool]()) { $0.append($1) }
                }
                #expect(results.filter { $0 }.count == 1)
                await client.close()
            }
        }

        @Test("watch a key prefix: current values first, then updates and deletes")
        func watch() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let kv = try await client.jetStream().createKeyValue(KeyValueConfiguration(bucket: "bans", history: 3))
                try await kv.put("pile.1", "old")
                try await kv.put("pile.1", "banned")
                try await kv.put("pile.2", "banned")
                try await kv.put("other.9", "not watched")

                let watcher = try await kv.watch("pile.>")
                #expect(watcher.initialPending == 2)
                let received = WatchedEntries()
                let reading = Task {
                    for try await entry in watcher { received.append(entry) }
                }
                try await waitUntil { received.count == 2 }
                let initial = received.entries
                #expect(initial.map(\.key) == ["pile.1", "pile.2"])
                #expect(initial.map(\.string) == ["banned", "banned"])  // newest only
                #expect(initial.last?.delta == 0)

                try await kv.put("pile.3", "banned")
                try await kv.put("other.9", "still not watched")
                try await kv.delete("pile.1")
                try await waitUntil { received.count == 4 }
                let live = Array(received.entries.dropFirst(2))
                #expect(live.map(\.key) == ["pile.3", "pile.1"])
                #expect(live.map(\.operation) == [.put, .delete])
                watcher.stop()
                _ = try await reading.value

                // A watch on an empty prefix says so and then delivers live values.
                let empty = try await kv.watch("none.>")
                #expect(empty.initialPending == 0)
                try await kv.put("none.1", "x")
                var iterator = empty.makeAsyncIterator()
                #expect(try await iterator.next()?.key == "none.1")
                empty.stop()
                await client.close()
            }
        }

        @Test("a watch survives a server restart: it resumes after the last revision it delivered, once each")
        func watchSurvivesRestart() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let kv = try await client.jetStream().createKeyValue(KeyValueConfiguration(bucket: "shared", history: 1))
                try await kv.put("node.a", "1")
                let watcher = try await kv.watch()
                let received = WatchedEntries()
                let reading = Task {
                    for try await entry in watcher { received.append(entry) }
                }
                try await waitUntil { received.count == 1 }
                try await kv.put("node.b", "2")
                try await waitUntil { received.count == 2 }

                try await server.restart()
                // Another node writes as soon as JetStream is back, perhaps before the watcher has resumed.
                let other = try await server.connect()
                let shared = try await other.jetStream().keyValue("shared")
                try await waitUntil("JetStream back") { (try? await shared.put("node.c", "3")) != nil }
                try await waitUntil("watch resumed") { watcher.recoveries == 1 }
                try await shared.put("node.a", "4")
                try await waitUntil { received.count >= 4 }
                try await Task.sleep(for: .milliseconds(200))  // room for a duplicate to show up
                let entries = received.entries
                #expect(entries.map(\.key) == ["node.a", "node.b", "node.c", "node.a"])
                #expect(entries.map(\.string) == ["1", "2", "3", "4"])
                #expect(entries.map(\.revision) == entries.map(\.revision).sorted() && Set(entries.map(\.revision)).count == 4)
                #expect(watcher.lastRevision == entries.last?.revision)
                // The replaced consumer does not linger next to the new one.
                try await waitUntil("one consumer") { try await other.jetStream().streamInfo("KV_shared").state.consumerCount == 1 }

                watcher.stop()
                _ = try await reading.value
                try await waitUntil("consumer deleted on stop") {
                    try await other.jetStream().streamInfo("KV_shared").state.consumerCount == 0
                }
                await client.close()
                await other.close()
            }
        }
    }
}

/// Entries collected from a watcher task.
final class WatchedEntries: Sendable {
    private let box = NIOLockedValueBox<[KeyValueEntry]>([])
    func append(_ entry: KeyValueEntry) { box.withLockedValue { $0.append(entry) } }
    var entries: [KeyValueEntry] { box.withLockedValue { $0 } }
    var count: Int { box.withLockedValue { $0.count } }
}

