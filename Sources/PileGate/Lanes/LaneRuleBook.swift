import Atomics
import Foundation
import GRDB
import Logging
import YKC

/// The gateway's lane rules: decides each session's lane at login, and holds, persists and
/// replaces the rule list at run time.
///
/// Reads and writes are deliberately asymmetric. `lane(for:remoteHost:)` runs on pile event
/// loops for every login, so it is one atomic load of an immutable compiled snapshot and never
/// waits. `replace(with:ifVersion:)` is rare and operator-driven, so it validates everything,
/// commits to SQLite first and only then swaps the snapshot: a list that takes effect has always
/// been stored, and a restart comes back with exactly the rules that were in force.
///
/// Rules apply to logins decided after the swap; sessions keep the lane they were given (moving
/// live sessions, e.g. when idle, is the hub's decision, not the rule book's).
public final class LaneRuleBook: Sendable {
    /// Upper bound of rules in one list: rules are scanned in order per login, so this keeps a
    /// login's worst case bounded (use `piles`, `pilePrefix` or `percent` rather than one rule per pile).
    public static let maxRules = 1000
    /// Upper bound of ids in one rule's `piles` list.
    public static let maxPilesPerRule = CompiledLaneRule.maxPilesPerRule
    /// Upper bound of ids over all `piles` lists of a list.
    public static let maxTotalPiles = 100_000

    private let database: DatabasePool
    private let current: ManagedAtomic<LaneRuleSnapshot>
    private let logger: Logger
    /// Cluster mode: where a change is agreed before this node stores and applies it.
    private let sharing: (any LaneRuleSharing)?

    /// Opens the rule book on the registry's database (the data directory's pilegate.sqlite);
    /// with `sharing`, changes are committed there first (cluster mode).
    public convenience init(registry: PileRegistry, sharing: (any LaneRuleSharing)? = nil, logger: Logger) throws {
        try self.init(database: registry.database, sharing: sharing, logger: logger)
    }

    /// Creates the `lane_rules` table if needed (GRDB migration "v1-lane-rules") and loads the
    /// persisted list.
    ///
    /// A stored list that no longer validates (written by a newer version, edited by hand) is
    /// logged and not applied — every session then gets the base lane, which is the safe
    /// direction — but its version is kept, so the next replacement still counts up.
    public init(database: DatabasePool, sharing: (any LaneRuleSharing)? = nil, logger: Logger) throws {
        self.database = database
        self.logger = logger
        self.sharing = sharing
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-lane-rules") { db in
            // One row: the list is replaced as a whole, so it is stored as a whole, atomically.
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS lane_rules (
                        id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
                        version INTEGER NOT NULL,
                        updatedAt REAL NOT NULL,
                        rules TEXT NOT NULL
                    )
                    """)
        }
        try migrator.migrate(database)
        let row = try database.read { db in
            try Row.fetchOne(db, sql: "SELECT version, updatedAt, rules FROM lane_rules WHERE id = 1")
        }
        var snapshot = LaneRuleSnapshot.empty
        if let row {
            let version: Int = row["version"]
            let updatedAt = Date(timeIntervalSince1970: row["updatedAt"])
            let text: String = row["rules"]
            do {
                let rules = try Self.decodeStored(text)
                snapshot = LaneRuleSnapshot(
                    rules: rules, compiled: try Self.compile(rules), version: version, updatedAt: updatedAt)
            } catch {
                logger.error(
                    "stored lane rules are invalid and were not applied; every session gets the base lane until they are replaced",
                    metadata: ["version": "\(version)", "error": "\(error)"])
                snapshot = LaneRuleSnapshot(rules: [], compiled: [], version: version, updatedAt: updatedAt)
            }
        }
        current = ManagedAtomic(snapshot)
    }

    // MARK: reading

    /// The lane of a session at login ("" = base): the first rule that matches wins.
    /// Lock-free and non-blocking, for pile event loops.
    public func lane(for login: Login, remoteHost: String) -> String {
        current.load(ordering: .acquiring).lane(for: login, remoteHost: remoteHost)
    }

    /// The rules in force, version and time, read together (what `GET /v1/lanes` shows).
    public var document: LaneRuleDocument { current.load(ordering: .acquiring).document }

    /// The rules in force, in evaluation order.
    public var rules: [LaneRule] { current.load(ordering: .acquiring).rules }

    /// How many replacements have been stored; 0 when the list was never set.
    public var version: Int { current.load(ordering: .acquiring).version }

    /// When the rules in force were stored; nil when the list was never set.
    public var updatedAt: Date? { current.load(ordering: .acquiring).updatedAt }

    /// The stable percentage bucket 0...99 of a pile (`percent: N` holds when bucket < N):
    /// FNV-1a 32-bit over the 14-character pile id, modulo 100. Public so tools and the hub can
    /// tell which piles a rollout will take.
    public static func percentBucket(of pileId: PileID) -> Int {
        Int(CompiledLaneRule.percentBucket(pileId))
    }

    // MARK: changing

    /// Checks a list without storing it; the error names the rule and key, e.g.
    /// `rules[2].match.cidr: invalid CIDR '10.0.0/33': …`.
    public static func validate(_ rules: [LaneRule]) throws(LaneRuleError) {
        _ = try compile(rules)
    }

    /// Validates, persists and applies a new list; effective for the next login.
    ///
    /// With `ifVersion`, applies only when the stored list is still at that version and throws
    /// `LaneRuleVersionConflict` otherwise. Throws `LaneRuleError` for an invalid list, or a
    /// database error; in every failure nothing changes.
    @discardableResult
    public func replace(with rules: [LaneRule], ifVersion expected: Int? = nil) async throws -> LaneRuleDocument {
        let compiled = try Self.compile(rules)
        let text = JSONValue.array(rules.map(\.json)).description
        let now = Date()
        if let sharing {
            // Cluster mode: the shared store decides the version; this node then keeps a copy
            // so a restart without NATS comes back with the rules last agreed.
            let version = try await sharing.commit(rules: text, updatedAt: now, ifVersion: expected)
            let snapshot = LaneRuleSnapshot(rules: rules, compiled: compiled, version: version, updatedAt: now)
            try await store(snapshot, text: text)
            install(snapshot)
            logger.notice(
                "lane rules replaced (cluster)",
                metadata: ["version": "\(version)", "rules": "\(rules.count)", "lanes": "\(Set(rules.map(\.lane)).sorted())"])
            return snapshot.document
        }
        // The version is read and bumped inside the write transaction: GRDB serialises writers,
        // so versions follow commit order even with concurrent PUTs.
        let version: Int = try await database.write { db in
            let stored = try Int.fetchOne(db, sql: "SELECT version FROM lane_rules WHERE id = 1") ?? 0
            if let expected, expected != stored {
                throw LaneRuleVersionConflict(expected: expected, current: stored)
            }
            try db.execute(
                sql: """
                    INSERT INTO lane_rules (id, version, updatedAt, rules) VALUES (1, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET
                        version = excluded.version, updatedAt = excluded.updatedAt, rules = excluded.rules
                    """,
                arguments: [stored + 1, now.timeIntervalSince1970, text])
            return stored + 1
        }
        let snapshot = LaneRuleSnapshot(rules: rules, compiled: compiled, version: version, updatedAt: now)
        install(snapshot)
        logger.notice(
            "lane rules replaced",
            metadata: ["version": "\(version)", "rules": "\(rules.count)", "lanes": "\(Set(rules.map(\.lane)).sorted())"])
        return snapshot.document
    }

    /// Cluster mode: applies the list the cluster agreed on (`text` as stored by
    /// `LaneRuleSharing.commit`), whatever this node held before — the shared store is the truth,
    /// and a node that changed its rules alone while apart from the cluster takes the cluster's.
    /// A list this build cannot read is logged and not applied. Returns whether it was applied.
    @discardableResult
    public func adopt(rules text: String, version: Int, updatedAt: Date) async -> Bool {
        let old = current.load(ordering: .acquiring)
        if old.version == version && JSONValue.array(old.rules.map(\.json)).description == text { return false }
        let snapshot: LaneRuleSnapshot
        do {
            let rules = try Self.decodeStored(text)
            snapshot = LaneRuleSnapshot(rules: rules, compiled: try Self.compile(rules), version: version, updatedAt: updatedAt)
        } catch {
            logger.error(
                "the cluster's lane rules are invalid here and were not applied",
                metadata: ["version": "\(version)", "error": "\(error)"])
            return false
        }
        do { try await store(snapshot, text: text) } catch {
            logger.error("cannot store the cluster's lane rules; applied in memory only", metadata: ["error": "\(error)"])
        }
        current.store(snapshot, ordering: .releasing)
        logger.notice("lane rules adopted from the cluster", metadata: ["version": "\(version)", "rules": "\(snapshot.rules.count)"])
        return true
    }

    /// The JSON text of the rules in force, as `LaneRuleSharing.commit` stores it.
    public var storedText: String { JSONValue.array(rules.map(\.json)).description }

    private func store(_ snapshot: LaneRuleSnapshot, text: String) async throws {
        try await database.write { db in
            try db.execute(
                sql: """
                    INSERT INTO lane_rules (id, version, updatedAt, rules) VALUES (1, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET
                        version = excluded.version, updatedAt = excluded.updatedAt, rules = excluded.rules
                    """,
                arguments: [snapshot.version, (snapshot.updatedAt ?? Date()).timeIntervalSince1970, text])
        }
    }

    /// Swaps in `snapshot` unless a newer version is already in place: two replacements that
    /// commit in one order but finish in the other must still leave the newest list in force.
    private func install(_ snapshot: LaneRuleSnapshot) {
        var old = current.load(ordering: .acquiring)
        while old.version < snapshot.version {
            let (exchanged, original) = current.compareExchange(
                expected: old, desired: snapshot, ordering: .acquiringAndReleasing)
            if exchanged { return }
            old = original
        }
    }

    static func compile(_ rules: [LaneRule]) throws(LaneRuleError) -> [CompiledLaneRule] {
        guard rules.count <= maxRules else {
            throw LaneRuleError(path: "rules", message: "\(rules.count) rules exceed the limit of \(maxRules)")
        }
        var total = 0
        var compiled: [CompiledLaneRule] = []
        compiled.reserveCapacity(rules.count)
        for (i, rule) in rules.enumerated() {
            let c = try CompiledLaneRule(rule, index: i)
            total += rule.match.piles?.count ?? 0
            guard total <= maxTotalPiles else {
                throw LaneRuleError(
                    path: "rules[\(i)].match.piles",
                    message: "the lists hold more than \(maxTotalPiles) pile ids in total (use pilePrefix or percent)")
            }
            compiled.append(c)
        }
        return compiled
    }

    /// Reads the stored form (a JSON list of rules) through the same parser as the API, so what
    /// was accepted once is read back identically.
    private static func decodeStored(_ text: String) throws -> [LaneRule] {
        let json = try JSONValue.parse(text)
        guard let list = json.arrayValue else {
            throw LaneRuleError(path: "rules", message: "stored rules are not a list")
        }
        var rules: [LaneRule] = []
        for (i, item) in list.enumerated() { rules.append(try LaneRule(json: item, index: i)) }
        return rules
    }
}
