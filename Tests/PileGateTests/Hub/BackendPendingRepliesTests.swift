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
        pending.expect(id: "e1", replyName: BillingModelVerifyReply.name, defaults: defaults, deadline: t0 + 1, waiter: "w1")
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
        pending.expect(id: "e1", replyName: "login_reply", defaults: ["pileId": .string(pile.description)], deadline: t0 + 1, waiter: 1)
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
        pending.expect(id: "a", replyName: "login_reply", defaults: [:], deadline: t0 + 1, waiter: 1)
        pending.expect(id: "b", replyName: "login_reply", defaults: [:], deadline: t0 + 5, waiter: 2)
        pending.expect(id: "c", replyName: "login_reply", defaults: [:], deadline: t0 + 5, waiter: 3)
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
}
