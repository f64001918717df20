import Foundation
@testable import PileGate
import Testing

/// The outbox's in-memory delivery state without SQLite: hand-outs, acks, redelivery, floors
/// and their epoch, presence and retention.
@Suite("Outbox delivery state")
struct OutboxDeliveryStateTests {
    let t0 = Date(timeIntervalSince1970: 1_000_000)

    @Test("a handed-out event is busy until acked and recorded; unacked, it expires and is eligible again")
    func handOutAckExpire() {
        var s = OutboxDeliveryState(services: ["billing": ["transaction_record"]], lastSeen: [:], now: t0)
        var round = s.beginRound("billing", now: t0)
        #expect(round.busy.isEmpty)
        s.handOut("billing", id: "e1", seq: 1, until: t0 + 20)
        s.handOut("billing", id: "e2", seq: 2, until: t0 + 20)
        #expect(s.isInFlight(id: "e1", service: "billing"))
        let mark = s.acked(id: "e1", service: "billing")
        #expect(mark?.seq == 1)
        // A duplicate ack, or an ack for another service, makes no second mark.
        let again = s.acked(id: "e1", service: "billing")
        let otherService = s.acked(id: "e2", service: "other")
        #expect(again == nil)
        #expect(otherService == nil)
        #expect(!s.isInFlight(id: "e1", service: "billing"))
        // Acked but not recorded: still busy, and never expires.
        round = s.beginRound("billing", now: t0 + 30)
        #expect(round.busy == [1])
        #expect(round.redelivered == 1, "e2 expired unacked")
        if let mark { s.recorded([mark]) }
        round = s.beginRound("billing", now: t0 + 31)
        #expect(round.busy.isEmpty)
    }

    @Test("a hand-out that found no instance is handed back at once")
    func handBack() {
        var s = OutboxDeliveryState(services: ["billing": ["*"]], lastSeen: [:], now: t0)
        s.handOut("billing", id: "e1", seq: 1, until: t0 + 20)
        s.handBack("billing", id: "e1")
        let round = s.beginRound("billing", now: t0)
        #expect(round.busy.isEmpty)
    }

    @Test("floors rise from a round's reading, unless a replay or new types lowered them since")
    func floors() {
        var s = OutboxDeliveryState(services: ["billing": ["transaction_record"]], lastSeen: [:], now: t0)
        var round = s.beginRound("billing", now: t0)
        s.raiseFloor("billing", below: 11, readAt: round)
        #expect(s.floors["billing"] == 10)
        // A round reads, then a replay lowers the floor: the reading is void.
        round = s.beginRound("billing", now: t0)
        s.replayed("billing", from: 5)
        #expect(s.floors["billing"] == 4)
        s.raiseFloor("billing", below: 20, readAt: round)
        #expect(s.floors["billing"] == 4)
        // New types drop the floor entirely (events below it may be pending for them).
        round = s.beginRound("billing", now: t0)
        s.raiseFloor("billing", below: 20, readAt: round)
        #expect(s.floors["billing"] == 19)
        let added = s.subscribed("billing", types: ["transaction_record", "charging_end"], now: t0)
        #expect(added == ["charging_end"])
        #expect(s.floors["billing"] == nil)
        // Types it already had add nothing and keep the floor.
        s.raiseFloor("billing", below: 3, readAt: s.beginRound("billing", now: t0))
        let none = s.subscribed("billing", types: ["charging_end"], now: t0)
        #expect(none.isEmpty)
        #expect(s.floors["billing"] == 2)
    }

    @Test("presence: the last instance leaving is noted; a service absent past the cutoff is listed and forgotten")
    func presence() {
        var s = OutboxDeliveryState(services: ["old": ["*"]], lastSeen: ["old": t0 - 100], now: t0)
        _ = s.subscribed("billing", types: ["transaction_record"], now: t0)
        _ = s.subscribed("billing", types: ["transaction_record"], now: t0)
        #expect(s.connected("billing") == 2)
        let first = s.instanceLeft("billing", now: t0 + 1)
        let last = s.instanceLeft("billing", now: t0 + 2)
        let nobody = s.instanceLeft("billing", now: t0 + 3)
        #expect(!first)
        #expect(last)
        #expect(!nobody, "no instance left to leave")
        #expect(s.absent(since: t0) == ["old"])
        #expect(s.absent(since: t0 + 10) == ["billing", "old"])
        let forgotten = s.forget("old")
        let forgottenAgain = s.forget("old")
        #expect(forgotten)
        #expect(!s.isDurable("old"))
        #expect(!forgottenAgain)
        #expect(s.isDurable("billing"))
    }
}
