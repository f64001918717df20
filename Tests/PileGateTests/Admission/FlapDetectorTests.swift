import Foundation
import NIOCore
@testable import PileGate
import Testing

/// The flap detector's windows and bans, kept in two tables (docs/BENCHMARKS.md, "Memory per pile"):
/// what a connect, a lift, an imposed ban and the sweep do to each.
@Suite("Flap detector")
struct FlapDetectorTests {
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    @Test("a window that has passed starts the count again")
    func windowRestarts() {
        let f = FlapDetector(maxConnects: 2, window: .seconds(10), banDuration: .seconds(30))
        #expect(f.record("a", now: t0) == .allowed)
        #expect(f.record("a", now: t0 + .seconds(1)) == .allowed)
        // 11 s after the window began: a fresh window, so two more connects pass.
        #expect(f.record("a", now: t0 + .seconds(11)) == .allowed)
        #expect(f.record("a", now: t0 + .seconds(12)) == .allowed)
        #expect(f.record("a", now: t0 + .seconds(13)) == .newlyBanned)
        #expect(f.isBanned("a", now: t0 + .seconds(14)))
        #expect(!f.isBanned("a", now: t0 + .seconds(44)))
    }

    @Test("a window is aged across the wrap of its 32-bit millisecond start")
    func windowAcrossTheWrap() {
        // The window starts 1 s before uptime reaches 2^32 ms (49.7 days) and goes on past it.
        let start = NIODeadline.uptimeNanoseconds((UInt64(UInt32.max) - 1_000) * 1_000_000)
        let f = FlapDetector(maxConnects: 2, window: .seconds(10), banDuration: .seconds(30))
        #expect(f.record("w", now: start) == .allowed)
        #expect(f.record("w", now: start + .seconds(2)) == .allowed)
        #expect(f.record("w", now: start + .seconds(5)) == .newlyBanned)
        let g = FlapDetector(maxConnects: 1, window: .seconds(10), banDuration: .seconds(30))
        #expect(g.record("w", now: start) == .allowed)
        // 11 s later, past the wrap: the window is over.
        #expect(g.record("w", now: start + .seconds(11)) == .allowed)
    }

    @Test("a ban reports its start and count, is listed, and a lift forgets the count")
    func banAndLift() throws {
        let f = FlapDetector(maxConnects: 1, window: .seconds(10), banDuration: .seconds(30))
        #expect(f.record("p", now: t0) == .allowed)
        #expect(f.record("p", now: t0 + .seconds(1)) == .newlyBanned)
        let ban = try #require(f.ban("p", now: t0 + .seconds(2)))
        #expect(ban.connects == 2)
        #expect(ban.remaining == .seconds(29))
        #expect(f.bans(now: t0 + .seconds(2)).map(\.key) == ["p"])
        #expect(!f.lift("q", now: t0 + .seconds(2)))
        #expect(f.lift("p", now: t0 + .seconds(2)))
        #expect(f.ban("p", now: t0 + .seconds(2)) == nil)
        // The count was forgotten with the ban: one connect passes again.
        #expect(f.record("p", now: t0 + .seconds(3)) == .allowed)
    }

    @Test("an imposed ban keeps the longer of two, counts the larger number, and blocks connects")
    func imposed() throws {
        let f = FlapDetector(maxConnects: 5, window: .seconds(10), banDuration: .seconds(30))
        #expect(f.record("x", now: t0) == .allowed)
        let since = Date(timeIntervalSince1970: 1_700_000_000)
        f.impose("x", until: t0 + .seconds(60), since: since, connects: 9, now: t0)
        f.impose("x", until: t0 + .seconds(20), since: Date(), connects: 50, now: t0)  // shorter: ignored
        let ban = try #require(f.ban("x", now: t0 + .seconds(1)))
        #expect(ban.since == since)
        #expect(ban.connects == 9)
        #expect(f.record("x", now: t0 + .seconds(1)) == .banned(remaining: .seconds(59)))
        // After it ends, a fresh window.
        #expect(f.record("x", now: t0 + .seconds(61)) == .allowed)
        #expect(f.ban("x", now: t0 + .seconds(61)) == nil)
    }

    @Test("the sweep drops passed windows and ended bans, and keeps bans in force")
    func sweep() {
        let f = FlapDetector(maxConnects: 1, window: .seconds(10), banDuration: .seconds(100))
        let now = NIODeadline.now()
        #expect(f.record("old", now: now) == .allowed)
        #expect(f.record("banned", now: now) == .allowed)
        #expect(f.record("banned", now: now) == .newlyBanned)
        // A connect more than a window later sweeps: "old" goes, the ban stays.
        #expect(f.record("new", now: now + .seconds(20)) == .allowed)
        #expect(f.isBanned("banned", now: now + .seconds(20)))
        #expect(f.record("banned", now: now + .seconds(20)) == .banned(remaining: .seconds(80)))
        // "old" starts a fresh window (one connect allowed, the second bans).
        #expect(f.record("old", now: now + .seconds(21)) == .allowed)
        #expect(f.record("old", now: now + .seconds(22)) == .newlyBanned)
    }
}
