import Foundation
@testable import PileGate
import Testing

/// The router without sockets: lanes, fallback, return to the lane, per-pile stickiness and
/// the warm-up share, decided over plain values.
@Suite("Backend router: lanes and rendezvous hashing")
struct BackendRouterTests {
    /// An instance as the router sees it; `up` = subscribed and healthy.
    struct Instance: Equatable {
        var name: String
        var lane: String
        var up = true
        var joinedAt = Date(timeIntervalSince1970: 0)
    }

    let router = BackendRouter(warmup: 0)
    let now = Date(timeIntervalSince1970: 1_000_000)

    func choose(_ pile: UInt64, lane: String, _ instances: [Instance], router: BackendRouter? = nil, now: Date? = nil)
        -> BackendRouter.Choice<Instance>?
    {
        (router ?? self.router).choose(pile: pile, lane: lane, among: instances, now: now ?? self.now) { i in
            i.up ? BackendRouter.Candidate(lane: i.lane, seed: BackendRouter.seed(service: "billing", name: i.name), joinedAt: i.joinedAt) : nil
        }
    }

    @Test("a lane session goes to its lane's instance while one is up, never to base")
    func sameLane() {
        let instances = [Instance(name: "b0", lane: ""), Instance(name: "g1", lane: "gray"), Instance(name: "b1", lane: "")]
        for pile in UInt64(32_010_600_000_000)..<32_010_600_000_200 {
            let choice = choose(pile, lane: "gray", instances)
            #expect(choice?.instance.name == "g1")
            #expect(choice?.fallback == false)
        }
    }

    @Test("with its lane down, a lane session falls back to base (counted as a fallback) and returns to the lane when it is up")
    func fallbackAndReturn() {
        var instances = [Instance(name: "b0", lane: ""), Instance(name: "g1", lane: "gray")]
        let pile: UInt64 = 32_010_600_000_001
        #expect(choose(pile, lane: "gray", instances)?.instance.name == "g1")
        instances[1].up = false
        let fallback = choose(pile, lane: "gray", instances)
        #expect(fallback?.instance.name == "b0")
        #expect(fallback?.fallback == true)
        instances[1].up = true
        let back = choose(pile, lane: "gray", instances)
        #expect(back?.instance.name == "g1")
        #expect(back?.fallback == false)
        // Nothing up: no choice (the hub counts the event undeliverable).
        #expect(choose(pile, lane: "gray", instances.map { var i = $0; i.up = false; return i }) == nil)
    }

    @Test("a base session never reaches a lane instance, and a lane session never another lane's")
    func neverBaseToLane() {
        let lanesOnly = [Instance(name: "g1", lane: "gray"), Instance(name: "c1", lane: "canary")]
        for pile in UInt64(55_010_600_000_000)..<55_010_600_000_100 {
            #expect(choose(pile, lane: "", lanesOnly) == nil)
            #expect(choose(pile, lane: "blue", lanesOnly) == nil)
            let mixed = lanesOnly + [Instance(name: "b0", lane: "")]
            let base = choose(pile, lane: "", mixed)
            #expect(base?.instance.name == "b0")
            #expect(base?.fallback == false)
            #expect(choose(pile, lane: "blue", mixed)?.instance.name == "b0")
            #expect(choose(pile, lane: "blue", mixed)?.fallback == true)
        }
    }

    @Test("a pile sticks to one instance; a change of the set moves only the piles of the instance that went")
    func stickiness() {
        let three = ["a", "b", "c"].map { Instance(name: $0, lane: "") }
        var first: [UInt64: String] = [:]
        var counts: [String: Int] = [:]
        for pile in UInt64(55_010_600_000_000)..<55_010_600_003_000 {
            let name = choose(pile, lane: "", three)?.instance.name ?? "-"
            #expect(choose(pile, lane: "", three)?.instance.name == name, "same pile, same set, same instance")
            // The order the instances are listed in does not matter.
            #expect(choose(pile, lane: "", three.reversed())?.instance.name == name)
            first[pile] = name
            counts[name, default: 0] += 1
        }
        // Spread about evenly (1,000 each expected).
        for name in ["a", "b", "c"] { #expect((800...1200).contains(counts[name] ?? 0), "\(name): \(counts[name] ?? 0)") }
        // "b" goes down: a's and c's piles stay where they were; b's spread over a and c.
        let withoutB = three.map { var i = $0; i.up = $0.name != "b"; return i }
        for (pile, name) in first {
            let now = choose(pile, lane: "", withoutB)?.instance.name
            if name == "b" { #expect(now == "a" || now == "c") } else { #expect(now == name, "pile \(pile) moved from \(name)") }
        }
        // The seed depends on the service too: another service's instances of the same names
        // spread the piles differently.
        #expect(BackendRouter.seed(service: "billing", name: "a") != BackendRouter.seed(service: "monitor", name: "a"))
    }

    @Test("a warming instance takes a share that rises with its weight, then a full share")
    func warmup() {
        let router = BackendRouter(warmup: 100)
        let joined = now
        let old = Instance(name: "old", lane: "", joinedAt: joined.addingTimeInterval(-1000))
        let new = Instance(name: "new", lane: "", joinedAt: joined)
        func share(at t: TimeInterval) -> Double {
            var n = 0
            for pile in UInt64(0)..<4000 where choose(pile, lane: "", [old, new], router: router, now: joined.addingTimeInterval(t))?.instance == new {
                n += 1
            }
            return Double(n) / 4000
        }
        // Weight 0.02 (its floor) at once, 0.25 at a quarter of the window, 1 after it:
        // shares w / (1 + w).
        #expect(share(at: 0) < 0.05)
        #expect(abs(share(at: 25) - 0.25 / 1.25) < 0.04)
        #expect(abs(share(at: 200) - 0.5) < 0.04)
        #expect(BackendRouter.weight(joinedAt: joined, now: joined.addingTimeInterval(50), warmup: 100) == 0.5)
        #expect(BackendRouter.weight(joinedAt: joined, now: joined, warmup: 0) == 1)
    }
}
