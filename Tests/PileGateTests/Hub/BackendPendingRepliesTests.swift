import Foundation
@testable import PileGate
import Testing
import YKC

/// Pending replies without sockets: a reply fills in what the request fixed, ends its entry
/// once, a bad reply leaves it waiting, deadlines expire.
@Suite("Backend pending replies")
struct BackendPendingRepliesTests {
    let pile = PileID("55010600000001")!
    let t0 = Date(timeIntervalSince1970: 1_000_000)

    @Test("a reply becomes the pile's frame with the request's fields filled in, once")
    func replyFillsDefaults() throws {
        var pending = BackendPendingReplies<String>()
        let request = YKCMessage.billingModelVerify(BillingModelVerify(pileId: pile, billingModel: "0007"))
        let defaults = BackendPendingReplies<String>.defaults(for: request, pile: pile)
        #expect(defaults["pileId"] == .string("55010600000001"))
        #expect(defaults["billingModel"] != nil)
        _ = pending.expect(id: "e1", pile: 1, replyName: BillingModelVerifyReply.name, defaults: defaults, deadline: t0 + 1, waiter: "w1")
        #expect(pending.count == 1)
        // Unknown ids are not an answer.
        let unknown = try pending.reply(id: "nope", data: .object([:]))
        #expect(unknown == nil)
        let answer = try #require(try pending.reply(id: "e1", data: .object(["result": .string("same")])))
        #expect(answer.waiter == "w1")
        guard case .billingModelVerifyReply(let r) = answer.message else {
            Issue.record("not a verify reply: \(answer.message)")
            return
        }
        #expect(r.pileId == pile)
        #expect(r.result == .same)
        // Answered once: a second reply finds nothing.
        let again = try pending.reply(id: "e1", data: .object(["result": .string("same")]))
        #expect(again == nil)
        #expect(pending.count == 0)
    }

    @Test("a reply that makes no valid frame throws and leaves the entry waiting")
    func badReplyKeepsWaiting() throws {
        var pending = BackendPendingReplies<Int>()
        _ = pending.expect(id: "e1", pile: 1, replyName: "login_reply", defaults: ["pileId": .string(pile.description)], deadline: t0 + 1, waiter: 1)
        var threw = false
        do { _ = try pending.reply(id: "e1", data: .object(["result": .string("maybe")])) } catch { threw = true }
        #expect(threw)
        #expect(pending.count == 1)
        // `accepted: false` is the short form of result "rejected".
        let reply = try pending.reply(id: "e1", data: .object(["accepted": .bool(false)]))
        let answer = try #require(reply)
        guard case .loginReply(let r) = answer.message else {
            Issue.record("not a login reply: \(answer.message)")
            return
        }
        #expect(r.result == .rejected)
    }

    @Test("entries expire at their deadline, not before; a cancelled one is gone")
    func expiry() {
        var pending = BackendPendingReplies<Int>()
        _ = pending.expect(id: "a", pile: 1, replyName: "login_reply", defaults: [:], deadline: t0 + 1, waiter: 1)
        _ = pending.expect(id: "b", pile: 1, replyName: "login_reply", defaults: [:], deadline: t0 + 5, waiter: 2)
        _ = pending.expect(id: "c", pile: 1, replyName: "login_reply", defaults: [:], deadline: t0 + 5, waiter: 3)
        let early = pending.expire(now: t0)
        #expect(early.isEmpty)
        let first = pending.expire(now: t0 + 1)
        #expect(first.map(\.waiter) == [1])
        let cancelled = pending.cancel(id: "c")
        #expect(cancelled?.waiter == 3)
        let cancelledAgain = pending.cancel(id: "c")
        #expect(cancelledAgain == nil)
        let rest = pending.expire(now: t0 + 10)
        #expect(rest.map(\.waiter) == [2])
        #expect(pending.count == 0)
    }

    @Test("the per-pile and total bounds refuse and count; a reply, a cancel and an expiry each free a place")
    func bounds() throws {
        var pending = BackendPendingReplies<Int>()
        func expect(_ id: String, _ pile: UInt64) -> BackendPendingReplies<Int>.Limit? {
            pending.expect(
                id: id, pile: pile, replyName: "login_reply", defaults: ["pileId": .string(self.pile.description)],
                deadline: t0 + (id == "a2" ? 1 : 5), waiter: 0, perPileLimit: 2, totalLimit: 3)
        }
        #expect(expect("a1", 1) == nil)
        #expect(expect("a2", 1) == nil)
        #expect(expect("a3", 1) == .pile)
        #expect(pending.count(pile: 1) == 2)
        #expect(expect("b1", 2) == nil)
        // Three in all: B is under its own bound but the total is reached.
        #expect(expect("b2", 2) == .total)
        #expect(pending.count == 3)
        #expect(pending.refused == [.pile: 1, .total: 1])
        // A reply frees A's place, an expiry another, a cancel B's.
        _ = try pending.reply(id: "a1", data: .object(["result": .string("accepted")]))
        #expect(expect("a4", 1) == nil)
        #expect(pending.expire(now: t0 + 1).count == 1)
        #expect(pending.count(pile: 1) == 1)
        #expect(pending.cancel(id: "b1") != nil)
        #expect(pending.count(pile: 2) == 0)
        #expect(expect("b3", 2) == nil)
        #expect(expect("b4", 2) == nil)
        #expect(pending.count == 3)
        #expect(expect("c1", 3) == .total)
        #expect(pending.refused == [.pile: 1, .total: 2])
    }
}
