import Foundation
import GRDB
import NIOConcurrencyHelpers
import NIOCore
import YKC

/// Every start the gateway approved itself, by the trade serial it issued
/// (`offline_authorizations` in the gateway's database), so that the bill (0x3B) of such a
/// session, whenever the pile sends it, is marked as offline-authorized in its event: the
/// billing service then settles it once, from the bill, and knows it had not approved it.
///
/// The `offline_authorization` event itself goes through the outbox; this is the gateway's own
/// memory of what it issued. Lookups come from memory (the bill's event is built on the pile's
/// loop). Bounded: at most `capacity` entries (the oldest go first), and entries older than
/// `retention` (30 days by default; a pile sends its bill within 30 s of the session's end, or
/// after its next login) are dropped when the ledger opens.
final class OfflineAuthorizationLedger: Sendable {
    struct Entry: Sendable, Equatable {
        var tradeSerial: TradeSerial
        var pile: String
        var gun: Int
        var credential: String
        /// "recent" or "allow_list".
        var reason: String
        var capCents: Int64
        var authorizedAt: Date
        /// The id of the `offline_authorization` event.
        var eventId: String
    }

    private let writes: SQLiteWriteQueue
    private let entries = NIOLockedValueBox<[TradeSerial: Entry]>([:])
    private let capacity: Int
    private let retention: TimeInterval
    /// Called with each authorization this node issued (cluster mode shares them).
    private let hooks = NIOLockedValueBox<[@Sendable (Entry) -> Void]>([])

    init(database: DatabasePool, capacity: Int = 100_000, retention: TimeInterval = 30 * 86_400, now: Date = Date()) throws {
        writes = SQLiteWriteQueue(database: database)
        self.capacity = max(1, capacity)
        self.retention = retention
        let rows = try database.write { db -> [Row] in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS offline_authorizations (
                        tradeSerial TEXT PRIMARY KEY NOT NULL, pile TEXT NOT NULL, gun INTEGER NOT NULL, credential TEXT NOT NULL,
                        reason TEXT NOT NULL, capCents INTEGER NOT NULL, authorizedAt REAL NOT NULL, eventId TEXT NOT NULL)
                    """)
            try db.execute(sql: "DELETE FROM offline_authorizations WHERE authorizedAt < ?", arguments: [now.timeIntervalSince1970 - retention])
            return try Row.fetchAll(
                db, sql: "SELECT * FROM offline_authorizations ORDER BY authorizedAt DESC LIMIT ?", arguments: [self.capacity])
        }
        var loaded: [TradeSerial: Entry] = [:]
        for row in rows {
            guard let serial = TradeSerial(row["tradeSerial"] as String) else { continue }
            loaded[serial] = Entry(
                tradeSerial: serial, pile: row["pile"], gun: row["gun"], credential: row["credential"], reason: row["reason"],
                capCents: row["capCents"], authorizedAt: Date(timeIntervalSince1970: row["authorizedAt"]), eventId: row["eventId"])
        }
        entries.withLockedValue { $0 = loaded }
    }

    var count: Int { entries.withLockedValue { $0.count } }

    func entry(for serial: TradeSerial) -> Entry? {
        entries.withLockedValue { $0[serial] }
    }

    func contains(_ serial: TradeSerial) -> Bool { entry(for: serial) != nil }

    /// Calls `hook` with every authorization this node issues from now on (not with those
    /// adopted from other nodes).
    func onRecord(_ hook: @escaping @Sendable (Entry) -> Void) {
        hooks.withLockedValue { $0.append(hook) }
    }

    /// Records an issued authorization; `done` completes once it is committed. `shared` is false
    /// for one adopted from another node of the cluster (it is then kept only if new here).
    func record(_ entry: Entry, done: EventLoopPromise<Void>?, shared: Bool = true) {
        let (new, over) = entries.withLockedValue { e -> (Bool, Bool) in
            if !shared, e[entry.tradeSerial] != nil { return (false, false) }
            e[entry.tradeSerial] = entry
            return (true, e.count > capacity)
        }
        guard new else {
            done?.succeed(())
            return
        }
        if shared { for hook in hooks.withLockedValue({ $0 }) { hook(entry) } }
        // The write (and an eviction's sort) runs on the database's writer, off the pile's loop.
        writes.enqueue(
            { [self] db in
                try db.execute(
                    sql: """
                        INSERT OR REPLACE INTO offline_authorizations (tradeSerial, pile, gun, credential, reason, capCents, authorizedAt, eventId)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        entry.tradeSerial.description, entry.pile, entry.gun, entry.credential, entry.reason, entry.capCents,
                        entry.authorizedAt.timeIntervalSince1970, entry.eventId,
                    ])
                guard over else { return }
                for k in evictOldest() {
                    try db.execute(sql: "DELETE FROM offline_authorizations WHERE tradeSerial = ?", arguments: [k.description])
                }
            }, done: done)
    }

    /// Drops the oldest tenth when over `capacity` (a tenth at once, so eviction is not a sort
    /// per authorization), sorting a copy outside the lock.
    private func evictOldest() -> [TradeSerial] {
        let snapshot = entries.withLockedValue { e -> [(TradeSerial, Date)]? in
            e.count > capacity ? e.map { ($0.key, $0.value.authorizedAt) } : nil
        }
        guard let snapshot else { return [] }
        let drop = max(1, snapshot.count - capacity + capacity / 10)
        let oldest = snapshot.sorted { $0.1 < $1.1 }.prefix(drop)
        return entries.withLockedValue { e in
            oldest.compactMap { key, _ in e.removeValue(forKey: key) == nil ? nil : key }
        }
    }

    func flush() async { await writes.flush() }
}
