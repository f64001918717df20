import Foundation
@testable import PileGate
import PileSim
import Testing
import YKC

/// The bound on pile requests waiting for a backend's reply (`hubPendingRepliesPerPile`,
/// `hubPendingRepliesTotal`), over real sockets: simulated piles ask a billing backend that takes
/// every start request and never answers; a request over a bound is not sent and is answered at
/// once as a timed-out one is (refused, `pile_disabled`), counted in `/metrics`.
@Suite("Hub: pending backend replies are bounded per pile and in total")
struct PendingRepliesBoundTests {
    @Test("over the per-pile and the total bound a start is refused at once without reaching the backend; a reply frees a place")
    func boundsOverSockets() async throws {
        // A reply timeout far beyond the piles' own wait: a request that were held would fail the test.
        try await withHub(hub: {
            $0.replyTimeout = 60
            $0.pendingRepliesPerPile = 2
            $0.pendingRepliesTotal = 3
        }) { gw, hub in
            let billing = try await TestBackend.connect(apiPort: gw.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["start_request"])
            let pileA = try await gw.pile("55010600000801", guns: 3) { $0.requestBillingModel = false }
            let pileB = try await gw.pile("55010600000802", guns: 2) { $0.requestBillingModel = false }
            try await pileA.waitForLogin()
            try await pileB.waitForLogin()
            let cards = (1...6).map { BinaryID(raw: 0xC0DE_0000 + UInt64($0)) }
            let reached: @Sendable (BinaryID) -> Bool = { card in
                billing.events.contains {
                    $0["event"] as? String == "start_request" && ($0["data"] as? [String: Any])?["cardNumber"] as? String == card.description
                }
            }

            // Two starts of pile A wait for the silent backend.
            async let a1 = pileA.requestCardStart(gun: 1, card: cards[0], timeout: .seconds(30))
            async let a2 = pileA.requestCardStart(gun: 2, card: cards[1], timeout: .seconds(30))
            #expect(await gw.eventually { reached(cards[0]) && reached(cards[1]) })
            #expect(hub.statsDocument().pendingReplies == 2)
            // The third is over the per-pile bound: refused now, never published.
            let a3 = try await pileA.requestCardStart(gun: 3, card: cards[2], timeout: .seconds(20))
            #expect(a3.authResult == .failed)
            #expect(a3.failureReason == .pileDisabled)
            #expect(!reached(cards[2]))

            // Pile B has a place of its own, but only one is left in all.
            async let b1 = pileB.requestCardStart(gun: 1, card: cards[3], timeout: .seconds(30))
            #expect(await gw.eventually { reached(cards[3]) })
            let b2 = try await pileB.requestCardStart(gun: 2, card: cards[4], timeout: .seconds(20))
            #expect(b2.failureReason == .pileDisabled)
            #expect(!reached(cards[4]))
            #expect(hub.statsDocument().pendingReplies == 3)

            let metrics = try await gw.http("GET", "/metrics").body
            #expect(metrics.contains(#"pilegate_hub_pending_replies_refused_total{limit="pile"} 1"#), "\(metrics)")
            #expect(metrics.contains(#"pilegate_hub_pending_replies_refused_total{limit="total"} 1"#))
            #expect(metrics.contains("pilegate_hub_pending_replies 3"))

            // The backend answers A's first start: that frees a place, and A's next start reaches it.
            try await OfflineAuthorizationTests.answerStart(billing, card: cards[0], approve: true)
            #expect(try await a1.authResult == .succeeded)
            async let a4 = pileA.requestCardStart(gun: 3, card: cards[5], timeout: .seconds(30))
            try await OfflineAuthorizationTests.answerStart(billing, card: cards[5], approve: true)
            #expect(try await a4.authResult == .succeeded)
            try await OfflineAuthorizationTests.answerStart(billing, card: cards[1], approve: false)
            try await OfflineAuthorizationTests.answerStart(billing, card: cards[3], approve: false)
            #expect(try await a2.failureReason == .accountFrozen)
            #expect(try await b1.failureReason == .accountFrozen)
            #expect(hub.statsDocument().pendingReplies == 0)
            await billing.close()
            await pileA.stop()
            await pileB.stop()
        }
    }
}
