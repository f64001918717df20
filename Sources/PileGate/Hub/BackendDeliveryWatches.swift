import Atomics
import NIOConcurrencyHelpers

/// Who waits for a session's `pile_offline` to be acknowledged by the backends it went to.
///
/// A cluster takeover (docs/CLUSTER.md, "One session per pile") closes a pile's old session on
/// node A before node B accepts the pile's new login. A's `pile_offline` and B's `pile_online`
/// reach an instance over different paths (A's relayed, B's local or relayed by B), each with its
/// own credit; so A answers B only once its `pile_offline` is acknowledged by every instance it
/// went to (or could not be delivered), and no backend sees B's `pile_online` first.
///
/// Watches are rare (one per takeover, for a bounded time); the hub's ack path pays one atomic
/// load per ack for them while none is open.
final class BackendDeliveryWatches: Sendable {
    /// One session's `pile_offline`: how many instances it went to, and how many have settled it
    /// (acknowledged it, or dropped it: no other instance of its service could take it).
    final class Watch: Sendable {
        let pile: UInt64
        let connection: UInt64
        private let state = NIOLockedValueBox<(event: String?, expected: Int?, settled: Int)>((nil, nil, 0))

        init(pile: UInt64, connection: UInt64) {
            self.pile = pile
            self.connection = connection
        }

        /// The event is routed (`instances` of it) or not published at all (0).
        func expect(_ instances: Int) {
            state.withLockedValue { $0.expected = instances }
        }

        fileprivate func settledOne() {
            state.withLockedValue { $0.settled += 1 }
        }

        fileprivate func named(_ event: String) {
            state.withLockedValue { $0.event = event }
        }

        fileprivate var event: String? { state.withLockedValue { $0.event } }

        /// The event was published and some instance it went to has not settled it yet. (Not
        /// waiting either before the session published it, nor when it never does: a session
        /// that turned out not to own the pile any more publishes nothing.)
        var isWaiting: Bool {
            state.withLockedValue { s in s.event != nil && !(s.expected.map { s.settled >= $0 } ?? false) }
        }
    }

    private let open = ManagedAtomic(0)
    private let watches = NIOLockedValueBox<(byPile: [UInt64: Watch], byEvent: [String: Watch])>(([:], [:]))

    /// Starts watching the `pile_offline` that connection `connection` of `pile` publishes when it
    /// closes; `end` it when done waiting.
    func watch(pile: UInt64, connection: UInt64) -> Watch {
        let w = Watch(pile: pile, connection: connection)
        watches.withLockedValue { $0.byPile[pile] = w }
        open.wrappingIncrement(ordering: .relaxed)
        return w
    }

    /// Stops watching (once per `watch`).
    func end(_ w: Watch) {
        watches.withLockedValue { all in
            if let e = w.event, all.byEvent[e] === w { all.byEvent[e] = nil }
            if all.byPile[w.pile] === w { all.byPile[w.pile] = nil }
        }
        open.wrappingDecrement(ordering: .relaxed)
    }

    /// The hub is about to publish `event`, the `pile_offline` of `connection`: the watch waiting
    /// for it, if any, from now on keyed by the event.
    func publishing(_ event: String, pile: UInt64, connection: UInt64) -> Watch? {
        guard open.load(ordering: .relaxed) > 0 else { return nil }
        return watches.withLockedValue { all in
            guard let w = all.byPile[pile], w.connection == connection else { return nil }
            all.byPile[pile] = nil
            w.named(event)
            all.byEvent[event] = w
            return w
        }
    }

    /// An instance acknowledged event `id`, or it was dropped for one service (its queue full, no
    /// other instance to take it).
    func settled(_ id: String) {
        guard open.load(ordering: .relaxed) > 0 else { return }
        watches.withLockedValue { $0.byEvent[id] }?.settledOne()
    }

    /// Watches open (for tests and stats).
    var count: Int { open.load(ordering: .relaxed) }
}
