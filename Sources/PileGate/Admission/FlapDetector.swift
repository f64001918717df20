import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// Detects flapping: a key (pile id or source address) that connects more than `maxConnects`
/// times within `window` is banned for `banDuration` (EMQX's default: 15 a minute → 5 minutes).
///
/// Consulted once per connect/login, never per frame, so one lock is fine. Memory is bounded:
/// entries idle for a window are swept.
public final class FlapDetector: Sendable {
    /// A key's connects in its current window: 8 bytes a table slot beside the key, since every
    /// pile id that logged in within a window has one (19,000 piles: 32,768 slots of 24 B); the
    /// rare bans are kept apart so their fields do not widen every entry.
    private struct Window {
        /// Uptime in milliseconds of the window's first connect, wrapping every 49.7 days: ages
        /// are taken with wrapping subtraction, right for any window shorter than that (an entry
        /// is swept once its window is over, at the first connect after it).
        var start: UInt32
        var count: UInt32

        init(start: UInt32) {
            self.start = start
            self.count = 0
        }

        /// Milliseconds since the window started.
        func age(at nowMillis: UInt32) -> Int64 { Int64(nowMillis &- start) }
    }

    private static func millis(_ time: NIODeadline) -> UInt32 {
        UInt32(truncatingIfNeeded: time.uptimeNanoseconds / 1_000_000)
    }

    private struct BanEntry {
        var until: NIODeadline
        /// Wall-clock start of the ban, for operators (`GET /v1/bans`).
        var since: Date
        /// Connects counted when the ban started (or as the node that decided it counted).
        var connects: Int
    }

    private struct State {
        var windows: [String: Window] = [:]
        var bans: [String: BanEntry] = [:]
    }

    private let state = NIOLockedValueBox(State())
    private let maxConnects: Int
    private let window: TimeAmount
    private let banDuration: TimeAmount
    private let lastSweep = NIOLockedValueBox<NIODeadline>(.now())

    public init(maxConnects: Int, window: TimeAmount, banDuration: TimeAmount) {
        self.maxConnects = maxConnects
        self.window = window
        self.banDuration = banDuration
    }

    public enum Verdict: Equatable, Sendable {
        case allowed
        /// Just crossed the limit: the ban starts now (log once).
        case newlyBanned
        case banned(remaining: TimeAmount)
    }

    /// Records a connect of `key` at `now` and says whether it may proceed.
    public func record(_ key: String, now: NIODeadline = .now()) -> Verdict {
        sweepIfDue(now: now)
        return state.withLockedValue { s in
            if let ban = s.bans[key] {
                if now < ban.until { return .banned(remaining: ban.until - now) }
                // The ban is over: the key starts a fresh window.
                s.bans[key] = nil
                s.windows[key] = nil
            }
            let nowMillis = Self.millis(now)
            var w = s.windows[key] ?? Window(start: nowMillis)
            if w.age(at: nowMillis) * 1_000_000 > window.nanoseconds {
                w = Window(start: nowMillis)
            }
            w.count &+= 1
            if Int(w.count) > maxConnects && banDuration > .zero {
                s.bans[key] = BanEntry(until: now + banDuration, since: Date(), connects: Int(w.count))
                s.windows[key] = w
                return .newlyBanned
            }
            s.windows[key] = w
            return .allowed
        }
    }

    /// Whether `key` is banned now, without counting a connect.
    public func isBanned(_ key: String, now: NIODeadline = .now()) -> Bool {
        state.withLockedValue { s in
            guard let until = s.bans[key]?.until else { return false }
            return now < until
        }
    }

    /// A ban in force, as operators see it.
    public struct Ban: Sendable {
        public var key: String
        public var since: Date
        public var remaining: TimeAmount
        /// Connects counted in the window when the ban started (more than the limit).
        public var connects: Int
    }

    /// The bans in force at `now`, sorted by key.
    public func bans(now: NIODeadline = .now()) -> [Ban] {
        state.withLockedValue { s in
            s.bans.compactMap { key, b -> Ban? in
                guard now < b.until else { return nil }
                return Ban(key: key, since: b.since, remaining: b.until - now, connects: b.connects)
            }
        }.sorted { $0.key < $1.key }
    }

    /// Lifts the ban on `key` and forgets its count, so its next connect starts a fresh window.
    /// Returns false when `key` is not banned.
    public func lift(_ key: String, now: NIODeadline = .now()) -> Bool {
        state.withLockedValue { s in
            guard let until = s.bans[key]?.until, now < until else { return false }
            s.bans[key] = nil
            s.windows[key] = nil
            return true
        }
    }

    /// Bans `key` until `until` (a ban another node of the cluster decided), unless it is banned
    /// longer already. `connects` is what that node counted.
    public func impose(_ key: String, until: NIODeadline, since: Date, connects: Int, now: NIODeadline = .now()) {
        guard until > now else { return }
        state.withLockedValue { s in
            if let current = s.bans[key], current.until >= until { return }
            let counted = Int(s.windows[key]?.count ?? 0)
            s.bans[key] = BanEntry(until: until, since: since, connects: max(counted, connects))
        }
    }

    /// When `key`'s ban in force started, how many connects it counted and how long it has left.
    public func ban(_ key: String, now: NIODeadline = .now()) -> Ban? {
        state.withLockedValue { s in
            guard let b = s.bans[key], now < b.until else { return nil }
            return Ban(key: key, since: b.since, remaining: b.until - now, connects: b.connects)
        }
    }

    /// Keys banned right now.
    public var bannedCount: Int {
        let now = NIODeadline.now()
        return state.withLockedValue { $0.bans.values.filter { $0.until > now }.count }
    }

    private func sweepIfDue(now: NIODeadline) {
        let due = lastSweep.withLockedValue { last -> Bool in
            guard now - last > window else { return false }
            last = now
            return true
        }
        guard due else { return }
        let nowMillis = Self.millis(now)
        state.withLockedValue { s in
            s.bans = s.bans.filter { _, b in b.until > now }
            s.windows = s.windows.filter { key, w in
                s.bans[key] != nil || w.age(at: nowMillis) * 1_000_000 <= window.nanoseconds
            }
        }
    }
}
