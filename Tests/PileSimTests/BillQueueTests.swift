import NIOCore
import Testing
import YKC

@testable import PileSim

@Suite("BillQueue: a pile's stored bills, without a socket")
struct BillQueueTests {
    static let pile = PileID("32010600019236") ?? PileID(raw: 0)
    static let gun = GunNumber(number: 2) ?? GunNumber(raw: 0)

    static func record(_ n: Int) -> TransactionRecord {
        .simulated(pileID: pile, gun: gun, tradeSerial: TradeSerial.simulated(pileID: pile, gun: gun, counter: n))
    }

    static func isSend(_ d: BillQueue.SendDecision, _ record: TransactionRecord) -> Bool {
        if case .send(let r, let g) = d { return r.tradeSerial == record.tradeSerial && g == 1 }
        return false
    }

    @Test("a bill is sent, counted, and done on its 0x40 with the latency from its first send")
    func sendAndAck() throws {
        var q = BillQueue(maxSends: 10, countsSends: true)
        let r = Self.record(1)
        let serial = r.tradeSerial
        try q.enqueue(r, gunIndex: 1)
        #expect(q.order == [serial] && q.count == 1)
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect(Self.isSend(q.prepareSend(serial, now: t0), r))
        #expect(Self.isSend(q.prepareSend(serial, now: t0 + .milliseconds(200)), r))
        #expect(q.sends[serial] == 2)
        let latency = q.acknowledge(serial, result: .accepted, now: t0 + .milliseconds(350))
        #expect(latency == .milliseconds(350))
        #expect(q.count == 0 && q.order.isEmpty)
        #expect(q.acked == [serial] && q.ackResults[serial] == .accepted)
        #expect(q.prepareSend(serial, now: t0) == .notPending)
    }

    @Test("a serial already pending is refused; one acknowledged before may be queued again")
    func duplicates() throws {
        var q = BillQueue(maxSends: 10, countsSends: false)
        let r = Self.record(1)
        try q.enqueue(r, gunIndex: 1)
        #expect(throws: SimulatedPileError.self) { try q.enqueue(r, gunIndex: 1) }
        #expect(q.count == 1 && q.order.count == 1)
        _ = q.acknowledge(r.tradeSerial, result: .illegal, now: .now())
        try q.enqueue(r, gunIndex: 1)
        #expect(q.acked.isEmpty && q.order == [r.tradeSerial])
    }

    @Test("after maxSends without a 0x40 the bill is abandoned")
    func abandon() throws {
        var q = BillQueue(maxSends: 2, countsSends: true)
        let r = Self.record(1)
        try q.enqueue(r, gunIndex: 1)
        #expect(Self.isSend(q.prepareSend(r.tradeSerial, now: .now()), r))
        #expect(Self.isSend(q.prepareSend(r.tradeSerial, now: .now()), r))
        #expect(q.prepareSend(r.tradeSerial, now: .now()) == .abandoned)
        #expect(q.abandoned == [r.tradeSerial] && q.order.isEmpty && q.count == 0)
        #expect(q.sends[r.tradeSerial] == 2)
        // A late 0x40 for it changes nothing.
        #expect(q.acknowledge(r.tradeSerial, result: .accepted, now: .now()) == nil)
        #expect(q.acked.isEmpty)
    }

    @Test("an unknown 0x40 is ignored; the others keep their queueing order")
    func order() throws {
        var q = BillQueue(maxSends: 10, countsSends: false)
        let rs = (1...3).map(Self.record)
        for r in rs { try q.enqueue(r, gunIndex: 1) }
        #expect(q.acknowledge(Self.record(9).tradeSerial, result: .accepted, now: .now()) == nil)
        _ = q.acknowledge(rs[1].tradeSerial, result: .accepted, now: .now())
        #expect(q.order == [rs[0].tradeSerial, rs[2].tradeSerial])
        #expect(q.sends.isEmpty)
        // Never sent: acknowledged with zero latency.
        #expect(q.acknowledge(rs[0].tradeSerial, result: .accepted, now: .now()) == .zero)
    }
}
