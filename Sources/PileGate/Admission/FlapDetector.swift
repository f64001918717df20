import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// Detects flapping: a key (pile id or source address) that connects more than `maxConnects`
/// times within `window` is banned for `banDuration` (EMQX's default: 15 a minute → 5 minutes).
///
/// Consulted once per connect/login, never per frame, so one lock is fine. Memory is bounded:
/// entries idle for a window are swept.
public final class FlapDetector: Sendable {
    private struct Entry {
        var windowStart: NIODeadline
        var count: Int
        var bannedUntil: NIODeadline?
        /// Wall-clock start of the ban, for operators (`GET /v1/bans`).
        var bannedAt: Date?
    }

    private let state = NIOLockedValueBox<[String: Entry]>([:])
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
        return state.withLockedValue { entries in
            var e = entries[key] ?? Entry(windowStart: now, count: 0, bannedUntil: nil)
            if let until = e.bannedUntil {
                if now < until {
                    entries[key] = e
                    return .banned(remaining: until - now)
                }
                e = Entry(windowStart: now, count: 0, bannedUntil: nil)
            }
            if now - e.windowStart > window {
                e.windowStart = now
                e.count = 0
            }
            e.count += 1
            if e.count > maxConnects && banDuration > .zero {
                e.bannedUntil = now + banDuration
                e.bannedAt = Date()
                entries[key] = e
                return .newlyBanned
            }
            entries[key] = e
            return .allowed
        }
    }

    /// Whether `key` is banned now, without counting a connect.
    public func isBanned(_ key: String, now: NIODeadline = .now()) -> Bool {
        state.withLockedValue { entries in
            guard let until = entries[key]?.bannedUntil else { return false }
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
        state.withLockedValue { entries in
            entries.compactMap { key, e -> Ban? in
                guard let until = e.bannedUntil, now < until else { return nil }
                return Ban(key: key, since: e.bannedAt ?? Date(), remaining: until - now, connects: e.count)
            }
        }.sorted { $0.key < $1.key }
    }

    /// Lifts the ban on `key` and forgets its count, so its next connect starts a fresh window.
    /// Returns false when `key` is not banned.
    public func lift(_ key: String, now: NIODeadline = .now()) -> Bool {
        state.withLockedValue { entries in
            guard let until = entries[key]?.bannedUntil, now < until else { return false }
            entries[key] = nil
            return true
        }
    }

    /// Bans `key` until `until` (a ban another node of the cluster decided), unless it is banned
    /// longer already. `connects` is what that node counted.
    public func impose(_ key: String, until: NIODeadline, since: Date, connects: Int, now: NIODeadline = .now()) {
        guard until > now else { return }
        state.withLockedValue { entries in
            var e = entries[key] ?? Entry(windowStart: now, count: 0, bannedUntil: nil)
            if let current = e.bannedUntil, current >= until { return }
            e.bannedUntil = until
            e.bannedAt = since
            e.count = max(e.count, connects)
            entries[key] = e
        }
    }

    /// When `key`'s ban in force started, how many connects it counted and how long it has left.
    public func ban(_ key: String, now: NIODeadline = .now()) -> Ban? {
        state.withLockedValue { entries in
            guard let e = entries[key], let until = e.bannedUntil, now < until else { return nil }
            return Ban(key: key, since: e.bannedAt ?? Date(), remaining: until - now, connects: e.count)
        }
    }

    /// Keys banned right now.
    public var bannedCount: Int {
        let now = NIODeadline.now()
        return state.withLockedValue { $0.values.filter { ($0.bannedUntil ?? now) > now }.count }
    }

    private func sweepIfDue(now: NIODeadline) {
        let due = lastSweep.withLockedValue { last -> Bool in
            guard now - last > window else { return false }
            last = now
            return true
        }
        guard due else { return }
        state.withLockedValue { entries in
            entries = entries.filter { _, e in
                if let until = e.bannedUntil, until > now { return true }
                return now - e.windowStart <= window
            }
        }
    }
}
