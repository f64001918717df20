import Foundation
import NATS
import NATSTestSupport
import NIOCore
@testable import PileGate
import PileSim
import Testing
import YKC

/// The relay's batches (docs/CLUSTER.md, "Backends see one gateway"): many events, or many
/// outcomes, in one NATS message between nodes that both read them, and one message per event
/// for a node of an earlier version.
@Suite("Cluster: relayed events and outcomes in batches", .serialized, .timeLimit(.minutes(2)))
struct ClusterRelayBatchTests {
    @Test("events and outcomes survive the framing in order; a damaged batch is refused whole, a bad outcome line alone")
    func framing() throws {
        var body = ByteBuffer()
        let texts = [#"{"event":"heartbeat"}"#, "", String(repeating: "桩", count: 3000)]
        for (i, t) in texts.enumerated() { ClusterRelayBatch.append(id: "n1-abc-\(i)", text: ByteBuffer(string: t), to: &body) }
        let events = try #require(ClusterRelayBatch.events(in: body))
        #expect(events.map(\.id) == ["n1-abc-0", "n1-abc-1", "n1-abc-2"])
        #expect(events.map { String(buffer: $0.text) } == texts)
        var cut = body
        cut.moveWriterIndex(to: body.writerIndex - 1)
        #expect(ClusterRelayBatch.events(in: cut) == nil, "a batch one byte short hands out nothing")
        #expect(ClusterRelayBatch.events(in: ByteBuffer(bytes: [0, 0, 0, 0, 0, 0])) == nil, "an empty id")
        #expect(ClusterRelayBatch.events(in: ByteBuffer())?.isEmpty == true)

        var lines = ByteBuffer()
        ClusterRelayBatch.appendOutcome(.acked, key: "n2-t-1", id: "n1-abc-0", to: &lines)
        ClusterRelayBatch.appendOutcome(.failed(.queueFull), key: "n2-t-1", id: "n1-abc-1", to: &lines)
        lines.writeString("nonsense n2-t-1 n1-abc-9\nacked onlykey\n\n")
        ClusterRelayBatch.appendOutcome(.failed(.instanceGone), key: "n2-t-2", id: "n1-abc-2", to: &lines)
        let outcomes = ClusterRelayBatch.outcomes(in: lines)
        #expect(outcomes.map(\.outcome) == [.acked, .failed(.queueFull), .failed(.instanceGone)])
        #expect(outcomes.map { String($0.id) } == ["n1-abc-0", "n1-abc-1", "n1-abc-2"])
        #expect(outcomes.map { String($0.key) } == ["n2-t-1", "n2-t-1", "n2-t-2"])
    }

    /// Two stand-in nodes on the real server: "old" advertises an instance without `batches` (a
    /// node of the previous version), "new" with it. The pile's node must send each what it reads,
    /// and take the acks each sends back.
    @Test("a node that reads batches gets them and acks in batches; a node of the earlier version gets and acks one event a message")
    func mixedVersions() async throws {
        try await ClusterFixture.with(nodes: ["n1"]) { cluster in
            let a = cluster.nodes[0]
            let subjects = ClusterSubjects(cluster: cluster.clusterName)
            let nats = try await cluster.nats.connect()
            let oldDeliveries = try await nats.subscribe(to: subjects.node("old", "deliver"))
            let newDeliveries = try await nats.subscribe(to: subjects.node("new", "deliver"))
            func advert(_ node: String, batches: Bool?) throws -> ByteBuffer {
                let instance = ClusterBackendAdvert.Instance(
                    key: "\(node)-t-1", service: "svc-\(node)", instance: "i-\(node)", lane: "", events: ["heartbeat"],
                    maxInFlight: 100, durable: false, state: "healthy", joinedSecondsAgo: 600)
                return ByteBuffer(bytes: try JSONEncoder().encode(ClusterBackendAdvert(node: node, instances: [instance], batches: batches)))
            }
            let oldAdvert = try advert("old", batches: nil)
            let newAdvert = try advert("new", batches: true)
            let announcing = Task {
                while !Task.isCancelled {
                    for node in ["old", "new"] {
                        let beat = ClusterHeartbeat(node: node, piles: 0, api: nil, startedAt: 1)
                        try? nats.publish(ByteBuffer(bytes: try JSONEncoder().encode(beat)), to: subjects.heartbeat(node: node))
                    }
                    try? nats.publish(oldAdvert, to: subjects.backends(node: "old"))
                    try? nats.publish(newAdvert, to: subjects.backends(node: "new"))
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            defer { announcing.cancel() }
            try #require(await a.eventually { await a.relayInstances().filter { ["old", "new"].contains($0["node"] as? String ?? "") }.count == 2 })

            // "old": one event per message, with its id in a header; acked one a message.
            let oldAcks = Task { () -> [String] in
                var ids: [String] = []
                for await m in oldDeliveries {
                    #expect(m.headers?[ClusterEventRelay.Header.batch] == nil, "a batch sent to a node that did not ask for them")
                    guard let id = m.headers?[ClusterEventRelay.Header.event], let origin = m.replyTo else { continue }
                    #expect(String(buffer: m.payload).contains("\"heartbeat\""))
                    var h = NATSHeaders()
                    h.append(ClusterEventRelay.Header.instance, "old-t-1")
                    h.append(ClusterEventRelay.Header.event, id)
                    h.append(ClusterEventRelay.Header.outcome, "acked")
                    try? nats.publish(ByteBuffer(), to: origin, headers: h)
                    ids.append(id)
                    if ids.count == 3 { break }
                }
                return ids
            }
            // "new": batches, acked with one outcome message per batch.
            let newAcks = Task { () -> [String] in
                var ids: [String] = []
                for await m in newDeliveries {
                    #expect(m.headers?[ClusterEventRelay.Header.batch] != nil, "a node that reads batches got a single event")
                    guard let origin = m.replyTo, let events = ClusterRelayBatch.events(in: m.payload) else { continue }
                    var lines = ByteBuffer()
                    for e in events {
                        #expect(String(buffer: e.text).contains("\"heartbeat\""))
                        ClusterRelayBatch.appendOutcome(.acked, key: "new-t-1", id: e.id, to: &lines)
                        ids.append(e.id)
                    }
                    var h = NATSHeaders()
                    h.append(ClusterEventRelay.Header.outcomes, "1")
                    try? nats.publish(lines, to: origin, headers: h)
                    if ids.count >= 3 { break }
                }
                return ids
            }
            let pile = try await a.startPile("55010600007101")
            // Bounded: a stand-in that gets too few events ends its loop here and the counts below fail.
            let watchdog = Task {
                try? await Task.sleep(for: .seconds(30))
                oldAcks.cancel()
                newAcks.cancel()
            }
            let (old, new) = (await oldAcks.value, await newAcks.value)
            watchdog.cancel()
            #expect(old.count == 3 && new.count >= 3)
            // The pile's node took both kinds of ack: its lane traffic counts them per service.
            #expect(await a.eventually {
                let hub = (try? await a.http("GET", "/v1/hub").json) ?? [:]
                let base = (hub["lanes"] as? [String: Any])?[""] as? [String: Any]
                let acks = { (s: String) in (base?[s] as? [String: Any])?["acks"] as? Int ?? 0 }
                return acks("svc-old") >= 3 && acks("svc-new") >= 3
            })
            await pile.stop()
            await nats.close()
        }
    }
}
