import Foundation
import GRDB
import NIOConcurrencyHelpers

/// The last decision a backend made on each card and VIN (approved or refused, when, with what
/// balance), kept in the gateway's database (`offline_auth_decisions`) so that an outage right
/// after a restart still finds it. `OfflineAuthorizationPolicy` reads it when no backend answers.
///
/// Reads come from memory, never from SQLite (the answer to a pile is built on its event loop);
/// writes go through to SQLite off the loop (`SQLiteWriteQueue`). Bounded: at most `capacity`
/// credentials — past it the least recently decided tenth is dropped, in memory and on disk,
/// sorted on the database's writer, never on a pile's loop —
/// and a decision older than `maxAge` is dropped when the cache opens (the policy never uses a
/// decision older than its window).
final class OfflineAuthorizationCache: Sendable {
    struct Decision: Sendable, Equatable {
        var approved: Bool
        var decidedAt: Date
        /// The balance the backend gave the pile, 0.01 yuan (0 on a refusal).
        var balanceCents: Int64
        /// The logical card number the backend gave (BCD digits), shown on the pile's screen.
        var logicalCardNumber: String
        /// The pile the decision was made for.
        var pile: String
    }

    private let writes: SQLiteWriteQueue
    private let entries = NIOLockedValueBox<[OfflineCredential: Decision]>([:])
    private let capacityBox: NIOLockedValueBox<Int>
    /// Called with each decision a backend made through this node (cluster mode shares them).
    private let hooks = NIOLockedValueBox<[@Sendable (OfflineCredential, Decision) -> Void]>([])

    init(database: DatabasePool, capacity: Int, maxAge: TimeInterval, now: Date = Date()) throws {
        writes = SQLiteWriteQueue(database: database)
        capacityBox = NIOLockedValueBox(max(1, capacity))
        let rows = try database.write { db -> [Row] in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS offline_auth_decisions (
                        credential TEXT PRIMARY KEY NOT NULL, approved INTEGER NOT NULL, decidedAt REAL NOT NULL,
                        balanceCents INTEGER NOT NULL, logicalCardNumber TEXT NOT NULL, pile TEXT NOT NULL)
                    """)
            try db.execute(sql: "DELETE FROM offline_auth_decisions WHERE decidedAt < ?", arguments: [now.timeIntervalSince1970 - maxAge])
            return try Row.fetchAll(
                db, sql: "SELECT * FROM offline_auth_decisions ORDER BY decidedAt DESC LIMIT ?", arguments: [max(1, capacity)])
        }
        var loaded: [OfflineCredential: Decision] = [:]
        for row in rows {
            guard let credential = Self.credential(row["credential"] as String) else { continue }
            loaded[credential] = Decision(
                approved: (row["approved"] as Int) != 0, decidedAt: Date(timeIntervalSince1970: row["decidedAt"]),
                balanceCents: row["balanceCents"], logicalCardNumber: row["logicalCardNumber"], pile: row["pile"])
        }
        entries.withLockedValue { $0 = loaded }
    }

    var count: Int { entries.withLockedValue { $0.count } }

    /// Changes the bound (a configuration reload); applied at the next decision recorded.
    func setCapacity(_ capacity: Int) {
        capacityBox.withLockedValue { $0 = max(1, capacity) }
    }

    func decision(for credential: OfflineCredential) -> Decision? {
        entries.withLockedValue { $0[credential] }
    }

    /// Calls `hook` with every decision recorded from now on by a backend's answer through this
    /// node (not with those adopted from other nodes).
    func onRecord(_ hook: @escaping @Sendable (OfflineCredential, Decision) -> Void) {
        hooks.withLockedValue { $0.append(hook) }
    }

    /// Records a backend's decision (a later one replaces an earlier one, in memory and on disk,
    /// whatever order the writes commit in). `shared` is false for a decision adopted from
    /// another node of the cluster, so that it is not published back.
    func record(_ credential: OfflineCredential, _ decision: Decision, shared: Bool = true) {
        let capacity = capacityBox.withLockedValue { $0 }
        let (newer, over) = entries.withLockedValue { e -> (Bool, Bool) in
            if let old = e[credential], old.decidedAt > decision.decidedAt { return (false, false) }
            if let old = e[credential], old == decision { return (false, false) }
            e[credential] = decision
            return (true, e.count > capacity)
        }
        if newer, shared { for hook in hooks.withLockedValue({ $0 }) { hook(credential, decision) } }
        guard newer || shared else { return }
        let key = credential.description
        // The write (and an eviction's sort) runs on the database's writer, off the pile's loop.
        writes.enqueue { [self] db in
            try db.execute(
                sql: """
                    INSERT INTO offline_auth_decisions (credential, approved, decidedAt, balanceCents, logicalCardNumber, pile)
                    VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT(credential) DO UPDATE SET approved = excluded.approved, decidedAt = excluded.decidedAt,
                        balanceCents = excluded.balanceCents, logicalCardNumber = excluded.logicalCardNumber, pile = excluded.pile
                    WHERE excluded.decidedAt >= offline_auth_decisions.decidedAt
                    """,
                arguments: [
                    key, decision.approved ? 1 : 0, decision.decidedAt.timeIntervalSince1970, decision.balanceCents,
                    decision.logicalCardNumber, decision.pile,
                ])
            guard over else { return }
            for k in evictOldest(capacity: capacity) {
                try db.execute(sql: "DELETE FROM offline_auth_decisions WHERE credential = ?", arguments: [k.description])
            }
        }
    }

    /// Drops the least recently decided tenth when over `capacity` (a tenth at once, so eviction
    /// is not a sort per decision). The sort runs outside the lock, on a copy; an entry decided
    /// again meanwhile stays.
    private func evictOldest(capacity: Int) -> [OfflineCredential] {
        let snapshot = entries.withLockedValue { e -> [(OfflineCredential, Date)]? in
            e.count > capacity ? e.map { ($0.key, $0.value.decidedAt) } : nil
        }
        guard let snapshot else { return [] }
        let drop = max(1, snapshot.count - capacity + capacity / 10)
        let oldest = snapshot.sorted { $0.1 < $1.1 }.prefix(drop)
        return entries.withLockedValue { e in
            oldest.compactMap { key, decidedAt in
                guard e[key]?.decidedAt == decidedAt else { return nil }
                e[key] = nil
                return key
            }
        }
    }

    /// Waits until every decision recorded so far is in SQLite.
    func flush() async { await writes.flush() }

    private static func credential(_ text: String) -> OfflineCredential? {
        OfflineCredential(entry: text)
    }
}
