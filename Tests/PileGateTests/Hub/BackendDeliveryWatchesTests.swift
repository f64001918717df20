@testable import PileGate
import Testing

/// `BackendDeliveryWatches`: what a cluster takeover waits for before it answers (the closed
/// session's `pile_offline`, acknowledged by every instance it went to), event by event.
@Suite("Delivery watches: a session's pile_offline, acknowledged by every instance it went to")
struct BackendDeliveryWatchesTests {
    @Test("waiting from the publish until every instance it went to has acked it or dropped it")
    func ackedByEveryInstance() {
        let watches = BackendDeliveryWatches()
        let w = watches.watch(pile: 7, connection: 70)
        #expect(!w.isWaiting, "nothing to wait for before the session publishes")
        // Another connection's offline, or another pile's, is not the one watched.
        #expect(watches.publishing("e-0", pile: 7, connection: 71) == nil)
        #expect(watches.publishing("e-1", pile: 8, connection: 70) == nil)
        #expect(watches.publishing("e-2", pile: 7, connection: 70) === w)
        #expect(w.isWaiting, "published, not routed yet")
        // An ack that arrives before the hub has counted the instances still counts.
        watches.settled("e-2")
        w.expect(3)
        #expect(w.isWaiting)
        watches.settled("e-9")
        watches.settled("e-2")
        #expect(w.isWaiting)
        watches.settled("e-2")
        #expect(!w.isWaiting)
        watches.end(w)
        #expect(watches.count == 0)
        // Once ended, the event is not tracked any more.
        watches.settled("e-2")
    }

    @Test("an offline that no instance takes, or that its session never publishes, is not waited for")
    func nothingToWaitFor() {
        let watches = BackendDeliveryWatches()
        let unrouted = watches.watch(pile: 1, connection: 10)
        #expect(watches.publishing("e-1", pile: 1, connection: 10) === unrouted)
        unrouted.expect(0)
        #expect(!unrouted.isWaiting)
        // A session that found a newer one owning the pile publishes nothing.
        let silent = watches.watch(pile: 2, connection: 20)
        #expect(!silent.isWaiting)
        watches.end(unrouted)
        watches.end(silent)
        #expect(watches.count == 0)
        #expect(watches.publishing("e-2", pile: 2, connection: 20) == nil, "ended watches are not found")
    }

    @Test("two takeovers of one pile: each watch ends once, the newer one is the one found")
    func newerWatchWins() {
        let watches = BackendDeliveryWatches()
        let older = watches.watch(pile: 3, connection: 30)
        let newer = watches.watch(pile: 3, connection: 31)
        #expect(watches.count == 2)
        #expect(watches.publishing("e-1", pile: 3, connection: 30) == nil)
        #expect(watches.publishing("e-2", pile: 3, connection: 31) === newer)
        watches.end(older)
        watches.end(newer)
        #expect(watches.count == 0)
    }
}
