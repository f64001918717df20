import NIOCore
import NIOEmbedded
import Testing
import YKC

@testable import PileSim

/// The firmware's behaviour event by event, on an embedded channel (no socket, a hand-moved clock).
/// The same behaviour against a platform over loopback is in `PileSimTests`.
@Suite("PileCore: firmware behaviour without a socket")
struct PileCoreTests {
    static let pileID = PileID("32010600019236") ?? PileID(raw: 0)

    @Test("connecting sends a login on sequence 0; with no 0x02 in loginTimeout the pile closes")
    func loginTimeout() throws {
        let pile = try EmbeddedPile()
        defer { pile.finish() }
        let frames = try pile.sent()
        #expect(frames.map(\.code) == [0x01])
        #expect(frames.first?.sequence == YKCSequence(counter: 0))
        #expect(pile.core.phase == .awaitingLogin)
        pile.advance(pile.config.loginTimeout - .milliseconds(1))
        #expect(pile.channel.isActive)
        pile.advance(.milliseconds(1))
        #expect(!pile.channel.isActive)
        #expect(pile.core.lastCloseReason == .loginTimeout)
        #expect(pile.core.loginTimeouts == 1)
        #expect(pile.core.phase == .disconnected)
    }

    @Test("a rejected login closes the link as loginRejected")
    func loginRejected() throws {
        let pile = try EmbeddedPile()
        defer { pile.finish() }
        try pile.receive(LoginReply(pileId: Self.pileID, result: .rejected))
        #expect(!pile.channel.isActive)
        #expect(pile.core.lastCloseReason == .loginRejected)
        #expect(pile.core.loginsRejected == 1)
    }

    @Test("logged in: asks for the billing model, heartbeats per gun; more than 3 misses drop the link")
    func heartbeats() throws {
        let pile = try EmbeddedPile()
        defer { pile.finish() }
        _ = try pile.sent()
        try pile.receive(LoginReply(pileId: Self.pileID, result: .accepted))
        #expect(pile.core.phase == .loggedIn)
        // heartbeatInitialDelay is zero: the first heartbeats go with the billing-model request.
        let first = try pile.sent()
        #expect(first.map(\.code) == [0x09, 0x03, 0x03])
        // Gun 1's counter carried the login (0) and the 0x09 (1); gun 2's starts at 0.
        #expect(first.dropFirst().map(\.sequence) == [YKCSequence(counter: 2), YKCSequence(counter: 0)])
        try pile.receive(HeartbeatReply(pileId: Self.pileID, gun: 1, reply: 0), sequence: first[1].sequence)
        #expect(pile.core.guns[0].unanswered == 0 && pile.core.guns[1].unanswered == 1)
        #expect(pile.core.guns[0].lastEchoedSequence == first[1].sequence)
        var beats = 2
        for _ in 0..<3 {
            pile.advance(pile.config.heartbeatInterval)
            beats += try pile.sent().filter { $0.code == 0x03 }.count
        }
        #expect(beats == 8)
        #expect(pile.channel.isActive)
        // Gun 2 now has 4 unanswered: the next tick closes instead of sending.
        pile.advance(pile.config.heartbeatInterval)
        #expect(try pile.sent().filter { $0.code == 0x03 }.isEmpty)
        #expect(!pile.channel.isActive)
        #expect(pile.core.lastCloseReason == .heartbeatTimeout(gun: 2))
    }

    @Test("platform commands before the login reply are not answered")
    func commandsBeforeLogin() throws {
        let pile = try EmbeddedPile()
        defer { pile.finish() }
        _ = try pile.sent()
        try pile.receive(RemoteStop(pileId: Self.pileID, gun: 1), sequence: YKCSequence(0x00, 0x05))
        #expect(try pile.sent().isEmpty)
    }

    @Test("remote start → 0x33 + charging 0x13; remote stop → 0x35, idle 0x13, bill re-sent until its 0x40")
    func startStopBill() throws {
        let pile = try EmbeddedPile { $0.requestBillingModel = false }
        defer { pile.finish() }
        try pile.logIn()
        let serial = TradeSerial("32010600019236012501011200000042") ?? .zero
        try pile.receive(
            RemoteStart(
                tradeSerial: serial, pileId: Self.pileID, gun: 2, logicalCardNumber: "0000001000000573",
                physicalCardNumber: .zero, balance: YKCDecimal(units: 10_000, scale: 2)),
            sequence: YKCSequence(0x00, 0x07))
        let started = try pile.sent().filter { $0.code != 0x03 }
        #expect(started.map(\.code) == [0x33, 0x13])
        #expect(started.first?.sequence == YKCSequence(0x00, 0x07))
        if case .remoteStartReply(let r)? = started.first.map(YKCMessage.decode) {
            #expect(r.result == .started && r.tradeSerial == serial)
        } else {
            Issue.record("0x33 did not decode")
        }
        #expect(pile.core.guns[1].session?.tradeSerial == serial)

        // A second start on the busy gun is refused.
        try pile.receive(
            RemoteStart(
                tradeSerial: serial, pileId: Self.pileID, gun: 2, logicalCardNumber: "0000001000000573",
                physicalCardNumber: .zero, balance: YKCDecimal(units: 10_000, scale: 2)),
            sequence: YKCSequence(0x00, 0x08))
        if case .remoteStartReply(let r)? = try pile.sent().first(where: { $0.code == 0x33 }).map(YKCMessage.decode) {
            #expect(r.result == .failed && r.failureReason == .gunAlreadyCharging)
        } else {
            Issue.record("no 0x33 for the second start")
        }

        try pile.receive(RemoteStop(pileId: Self.pileID, gun: 2), sequence: YKCSequence(0x00, 0x09))
        let stopped = try pile.sent().filter { $0.code != 0x03 }
        #expect(stopped.map(\.code) == [0x35, 0x13, 0x3B])
        #expect(stopped.first?.sequence == YKCSequence(0x00, 0x09))
        #expect(pile.core.bills.order == [serial])

        pile.advance(pile.config.billRetryInterval)
        #expect(try pile.sent().filter { $0.code == 0x3B }.count == 1)
        try pile.receive(TransactionRecordAck(tradeSerial: serial, result: .accepted))
        #expect(pile.core.bills.acked == [serial] && pile.core.bills.order.isEmpty)
        #expect(pile.core.bills.sends[serial] == 2)
        pile.advance(pile.config.billRetryInterval * 3)
        #expect(try pile.sent().filter { $0.code == 0x3B }.isEmpty)
    }

    @Test("a remote stop for another pile id is refused with pileIdMismatch")
    func stopOtherPile() throws {
        let pile = try EmbeddedPile { $0.requestBillingModel = false }
        defer { pile.finish() }
        try pile.logIn()
        let other = PileID("32010600019999") ?? PileID(raw: 0)
        try pile.receive(RemoteStop(pileId: other, gun: 1), sequence: YKCSequence(0x00, 0x03))
        let reply = try pile.sent().first { $0.code == 0x35 }
        if case .remoteStopReply(let r)? = reply.map(YKCMessage.decode) {
            #expect(r.result == .failed && r.failureReason == .pileIdMismatch)
        } else {
            Issue.record("no 0x35")
        }
    }
}
