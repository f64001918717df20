import Foundation

/// Chooses, for one event of one pile and one service, the instance that gets it
/// (docs/DESIGN.md, Lanes). Pure: it sees the candidates it is given and nothing else.
///
/// - Lanes: an instance in the session's lane if one can take the event; else a base-lane
///   instance (a counted fallback); an instance of another lane never. A base-lane session
///   therefore never reaches a lane instance, and a lane session returns to its lane as soon
///   as a lane instance can take events again (no state is kept between events).
/// - Within the candidates of a lane, weighted rendezvous (highest random weight) hashing on
///   the pile id: one pile stays on one instance while the set is stable (so its events stay
///   in order), a change of the set moves only the piles of the instance that came or went, and
///   a warming instance (weight < 1) takes a proportional share.
///
/// This is the gateway's only rendezvous hashing; the hub's routing and the tests use it.
struct BackendRouter: Sendable {
    /// What routing needs to know of an instance that may take the event.
    struct Candidate: Sendable {
        var lane: String
        /// The instance's key in the hashing (`seed(service:name:)`), computed once per instance.
        var seed: UInt64
        var joinedAt: Date
    }

    /// The instance chosen, and whether it is a base-lane fallback for a lane session.
    struct Choice<Instance> {
        var instance: Instance
        var fallback: Bool
    }

    /// How long a new instance's weight takes to rise from 0.02 to 1 (0 = at once).
    var warmup: TimeInterval

    init(warmup: TimeInterval) {
        self.warmup = warmup
    }

    /// One pass over `instances`: the best-scoring candidate in `lane`, else the best in base.
    /// `candidate` describes an instance that may take the event (subscribed, healthy, not
    /// excluded), or returns nil to skip it.
    func choose<Instance>(
        pile: UInt64, lane: String, among instances: some Sequence<Instance>, now: Date, candidate: (Instance) -> Candidate?
    ) -> Choice<Instance>? {
        var best: Instance?
        var bestScore = -Double.infinity
        var base: Instance?
        var baseScore = -Double.infinity
        for instance in instances {
            guard let c = candidate(instance) else { continue }
            let inLane = c.lane == lane
            guard inLane || c.lane.isEmpty else { continue }
            let score = Self.score(pile: pile, seed: c.seed, weight: Self.weight(joinedAt: c.joinedAt, now: now, warmup: warmup))
            if inLane {
                if score > bestScore { (best, bestScore) = (instance, score) }
            } else if score > baseScore {
                (base, baseScore) = (instance, score)
            }
        }
        if let best { return Choice(instance: best, fallback: false) }
        if let base { return Choice(instance: base, fallback: true) }
        return nil
    }

    /// The warm-up weight in (0, 1]: a new instance's share rises linearly over the window,
    /// from at least 0.02 so that it is reachable at once.
    static func weight(joinedAt: Date, now: Date, warmup: TimeInterval) -> Double {
        guard warmup > 0 else { return 1 }
        return min(1, max(0.02, now.timeIntervalSince(joinedAt) / warmup))
    }

    /// Weighted rendezvous score w / −ln(u), u = h(pile, instance) mapped into (0, 1): the
    /// instance with the highest score wins, and with weights w_i instance i wins a share
    /// w_i / Σ w of the piles.
    static func score(pile: UInt64, seed: UInt64, weight: Double) -> Double {
        let h = mix(pile ^ seed)
        let u = (Double(h >> 11) + 0.5) / Double(1 << 53)
        return weight / -log(u)
    }

    /// An instance's hashing key: FNV-1a of "service/name", stable across processes and
    /// restarts (Swift's `Hasher` is seeded per process), so a reconnecting instance gets its
    /// piles back.
    static func seed(service: String, name: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in service.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        h = (h ^ UInt64(UInt8(ascii: "/"))) &* 0x100_0000_01B3
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }

    /// splitmix64's finaliser: spreads pile ids that differ in a few low digits over all 64 bits.
    static func mix(_ x0: UInt64) -> UInt64 {
        var x = x0 &+ 0x9E37_79B9_7F4A_7C15
        x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
        return x ^ (x >> 31)
    }
}
