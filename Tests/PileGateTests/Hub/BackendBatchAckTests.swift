import Foundation
import NIOCore
@testable import PileGate
import PileSim
import Testing

/// `{"type":"ack","ids":[…]}`: many events acked in one message (docs/BACKEND-PROTOCOL.md, "ack").
@Suite("Batch acks: one message acks many events")
struct BackendBatchAckTests {
    @Test("the canonical form is read without a JSON parse; anything else takes the general path")
    func fastPathParser() {
        #expect(BackendConnection.plainAckIDs(#"{"type":"ack","ids":["a-1","b-2","c"]}"#) == ["a-1", "b-2", "c"])
        #expect(BackendConnection.plainAckIDs(#"{"type":"ack","ids":["only"]}"#) == ["only"])
        #expect(BackendConnection.plainAckIDs(#"{"type":"ack","ids":[]}"#) == nil)
        #expect(BackendConnection.plainAckIDs(#"{"type":"ack","ids":["a",]}"#) == nil)
        #expect(BackendConnection.plainAckIDs(#"{"type":"ack","ids":["a" ,"b"]}"#) == nil)
        #expect(BackendConnection.plainAckIDs(#"{"type":"ack","ids":["a\"b"]}"#) == nil)
        #expect(BackendConnection.plainAckIDs(#"{"type":"ack","ids":[""]}"#) == nil)
        #expect(BackendConnection.plainAckIDs(#"{"type":"ack","ids":[1]}"#) == nil)
        #expect(BackendConnection.plainAckIDs(#"{"type":"ack","id":"a"}"#) == nil)
        #expect(BackendConnection.plainAckIDs(#"{"type":"ack","ids":["a"]"#) == nil)
    }

    @Test("a batch frees one credit per id, over the fast path and the general one; unknown ids are named in one error")
    func creditAndErrors() async throws {
        try await withHub { gw, _ in
            let b = try await TestBackend.connect(apiPort: gw.apiPort, autoAck: false)
            try await b.subscribe(service: "s", instance: "i", events: ["pile_online"], maxInFlight: 2)
            var piles: [SimulatedPile] = []
            for n in 1...3 {
                let pile = try await gw.pile("5501060000090\(n)", guns: 1) { $0.requestBillingModel = false }
                try await pile.waitForLogin()
                piles.append(pile)
            }
            // Credit 2: two events out, the third waits.
            try await b.waitFor("2 events") { _ in b.events.count >= 2 }
            try await Task.sleep(nanoseconds: 200_000_000)
            #expect(b.events.count == 2)
            let first = b.events.compactMap { $0["id"] as? String }
            b.send(#"{"type":"ack","ids":["\#(first[0])","\#(first[1])"]}"#)
            try await b.waitFor("the third event") { _ in b.events.count >= 3 }
            // The general path (whitespace): acks the third, so two more fit at once.
            let third = try #require(b.events[2]["id"] as? String)
            b.send(#"{ "type": "ack", "ids": [ "\#(third)" ] }"#)
            for n in 4...5 {
                let pile = try await gw.pile("5501060000090\(n)", guns: 1) { $0.requestBillingModel = false }
                try await pile.waitForLogin()
                piles.append(pile)
            }
            try await b.waitFor("5 events") { _ in b.events.count >= 5 }
            #expect(!b.messages.contains { $0["type"] as? String == "error" })
            // Late and unknown ids: one error naming them; the id still in flight is acked.
            let fifth = try #require(b.events[4]["id"] as? String)
            b.send(#"{"type":"ack","ids":["\#(first[0])","nope","\#(fifth)"]}"#)
            let error = try await b.waitFor("unknown_id") { $0["error"] as? String == "unknown_id" }
            let message = try #require(error["message"] as? String)
            #expect(message.contains("2 of 3"), "\(message)")
            #expect(message.contains("'nope'") && message.contains("'\(first[0])'"), "\(message)")
            #expect(!message.contains("'\(fifth)'"), "\(message)")
            // Malformed batches.
            b.send(#"{"type":"ack","ids":[]}"#)
            try await b.waitFor("empty ids") { ($0["message"] as? String)?.contains("an array of 1 to") == true }
            b.send(#"{"type":"ack","ids":["x",7]}"#)
            try await b.waitFor("a number among the ids") { ($0["message"] as? String)?.contains("strings only") == true }
            for pile in piles { await pile.stop() }
            await b.close()
        }
    }
}
