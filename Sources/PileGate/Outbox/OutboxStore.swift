import Foundation
import GRDB
import Logging
import NIOCore
import YKC

/// The outbox's SQL: `dataDirectory/outbox.sqlite` (its own file, so its fsync policy is its
/// own: `synchronous = FULL`, the WAL synced at every commit, so an acknowledged bill survives
/// power loss too, not only kill -9; group commit keeps that affordable), its schema, and every
/// statement the outbox runs. No state of its own beyond the database.
final class OutboxStore: Sendable {
    /// An event to insert: `OutboxEvent` as columns.
    struct Insert: Sendable {
        var id: String
        var event: String
        var code: Int?
        var pile: String
        var gun: Int?
        var lane: String
        var tradeSerial: String?
        var receivedAt: Double
        var payload: String
    }

    /// What an insert became: stored under its seq, or a duplicate of a bill stored before.
    enum Inserted: Sendable {
        case stored(seq: Int64)
        case duplicate
    }

    /// A pending event as a delivery round reads it.
    struct Pending: Sendable {
        var seq: Int64
        var event: OutboxEvent
    }

    /// What was read at open: known services and their types, when each was last seen, how many
    /// events are stored.
    struct Recovered: Sendable {
        var services: [String: Set<String>]
        var lastSeen: [String: Date]
        var events: Int
    }

    let database: DatabasePool
    let logger: Logger
    let recovered: Recovered

    /// Opens (creating or migrating) the store. An existing file that is empty or unreadable
    /// throws unless `fresh` (see `SQLiteStore`).
    init(directory: String, fresh: Bool, logger: Logger) throws {
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        self.logger = logger
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-outbox") { db in
            try db.execute(
                sql: """
                    CREATE TABLE outbox_events (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        id TEXT NOT NULL UNIQUE,
                        event TEXT NOT NULL, code INTEGER, pile TEXT NOT NULL, gun INTEGER, lane TEXT NOT NULL,
                        tradeSerial TEXT, dedupKey TEXT UNIQUE,
                        receivedAt REAL NOT NULL, createdAt REAL NOT NULL, payload TEXT NOT NULL
                    );
                    CREATE INDEX outbox_events_event ON outbox_events(event, seq);
                    CREATE TABLE outbox_subscriptions (service TEXT NOT NULL, event TEXT NOT NULL, PRIMARY KEY(service, event));
                    CREATE TABLE outbox_progress (service TEXT NOT NULL, seq INTEGER NOT NULL, deliveredAt REAL NOT NULL,
                                                  PRIMARY KEY(service, seq));
                    """)
        }
        migrator.registerMigration("v2-outbox-services") { db in
            // When each durable service last had an instance connected; services known before
            // this table existed count as seen at the upgrade.
            try db.execute(
                sql: """
                    CREATE TABLE outbox_services (service TEXT PRIMARY KEY NOT NULL, lastSeen REAL NOT NULL);
                    INSERT INTO outbox_services (service, lastSeen) SELECT DISTINCT service, ? FROM outbox_subscriptions;
                    """, arguments: [Date().timeIntervalSince1970])
        }
        var subs: [Row] = []
        var seen: [Row] = []
        var pending = 0
        database = try SQLiteStore.open(
            directory: directory, file: "outbox.sqlite", what: "outbox (pending bills)", fresh: fresh,
            configuration: config, logger: logger
        ) { pool in
            try migrator.migrate(pool)
            try pool.read { db in
                subs = try Row.fetchAll(db, sql: "SELECT service, event FROM outbox_subscriptions")
                seen = try Row.fetchAll(db, sql: "SELECT service, lastSeen FROM outbox_services")
                pending = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM outbox_events") ?? 0
            }
        }
        var known: [String: Set<String>] = [:]
        for row in subs { known[row["service"] as String, default: []].insert(row["event"] as String) }
        var lastSeen: [String: Date] = [:]
        for row in seen { lastSeen[row["service"]] = Date(timeIntervalSince1970: row["lastSeen"]) }
        recovered = Recovered(services: known, lastSeen: lastSeen, events: pending)
    }

    // MARK: writing

    /// One transaction: the inserts (a bill de-duplicated by its trade serial) and the delivery
    /// marks. Statements are prepared once per connection and reused (GRDB's statement cache),
    /// not compiled again for every row: at thousands of bills and marks per second the
    /// compiling was a large share of the commit's CPU.
    func commit(_ inserts: [Insert], marks: [OutboxDeliveryState.Mark]) async throws -> [Inserted] {
        try await database.write { db -> [Inserted] in
            var out: [Inserted] = []
            out.reserveCapacity(inserts.count)
            let now = Date().timeIntervalSince1970
            if !inserts.isEmpty {
                let insert = try db.cachedStatement(
                    sql: """
                        INSERT OR IGNORE INTO outbox_events (id, event, code, pile, gun, lane, tradeSerial, dedupKey, receivedAt, createdAt, payload)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """)
                for a in inserts {
                    let dedup = Self.dedupKey(event: a.event, tradeSerial: a.tradeSerial)
                    try insert.execute(
                        arguments: [a.id, a.event, a.code, a.pile, a.gun, a.lane, a.tradeSerial, dedup, a.receivedAt, now, a.payload])
                    out.append(db.changesCount > 0 ? .stored(seq: db.lastInsertedRowID) : .duplicate)
                }
            }
            if !marks.isEmpty {
                let mark = try db.cachedStatement(sql: "INSERT OR IGNORE INTO outbox_progress (service, seq, deliveredAt) VALUES (?, ?, ?)")
                for m in marks {
                    try mark.execute(arguments: [m.service, m.seq, now])
                }
            }
            return out
        }
    }

    /// What makes a stored event unique beyond its id: a bill's trade serial (a re-sent bill is
    /// stored once), and the trade serial of an offline authorization (one event per session the
    /// gateway approved). Other events have none.
    static func dedupKey(event: String, tradeSerial: String?) -> String? {
        guard let tradeSerial else { return nil }
        switch event {
        case "transaction_record": return "bill:" + tradeSerial
        case "offline_authorization": return "offline:" + tradeSerial
        default: return nil
        }
    }

    /// Persists new durable types of `service` and that it was seen `now`.
    func subscribe(_ service: String, types: Set<String>, now: Date) async throws {
        try await database.write { db in
            for t in types {
                try db.execute(sql: "INSERT OR IGNORE INTO outbox_subscriptions (service, event) VALUES (?, ?)", arguments: [service, t])
            }
            try db.execute(
                sql: "INSERT OR REPLACE INTO outbox_services (service, lastSeen) VALUES (?, ?)", arguments: [service, now.timeIntervalSince1970])
        }
    }

    /// Records when each service was last seen.
    func recordLastSeen(_ sightings: [(service: String, lastSeen: Date)]) async throws {
        guard !sightings.isEmpty else { return }
        try await database.write { db in
            for s in sightings {
                try db.execute(
                    sql: "UPDATE outbox_services SET lastSeen = ? WHERE service = ?", arguments: [s.lastSeen.timeIntervalSince1970, s.service])
            }
        }
    }

    /// Removes `service`'s subscriptions and its last sighting (its acks stay); returns how
    /// many rows went.
    func forget(_ service: String) async throws -> Int {
        try await database.write { db -> Int in
            try db.execute(sql: "DELETE FROM outbox_subscriptions WHERE service = ?", arguments: [service])
            let n = db.changesCount
            try db.execute(sql: "DELETE FROM outbox_services WHERE service = ?", arguments: [service])
            return n + db.changesCount
        }
    }

    /// Deletes events created before `cutoff` that every service subscribed to their type has
    /// acked (and that at least one service has: an event nobody ever took is never dropped),
    /// and the marks of deleted events.
    func compact(before cutoff: Double) async throws -> Int {
        try await database.write { db -> Int in
            try db.execute(
                sql: """
                    DELETE FROM outbox_events WHERE createdAt < ?
                      AND EXISTS (SELECT 1 FROM outbox_progress p WHERE p.seq = outbox_events.seq)
                      AND NOT EXISTS (
                        SELECT 1 FROM outbox_subscriptions s
                        WHERE (s.event = outbox_events.event OR s.event = '*')
                          AND NOT EXISTS (SELECT 1 FROM outbox_progress p WHERE p.service = s.service AND p.seq = outbox_events.seq))
                    """, arguments: [cutoff])
            let n = db.changesCount
            try db.execute(sql: "DELETE FROM outbox_progress WHERE seq NOT IN (SELECT seq FROM outbox_events)")
            return n
        }
    }

    /// Forgets `service`'s marks for seq in `from...to`; returns how many.
    func replay(_ service: String, from: Int64, to: Int64) async throws -> Int {
        try await database.write { db -> Int in
            try db.execute(
                sql: "DELETE FROM outbox_progress WHERE service = ? AND seq BETWEEN ? AND ?", arguments: [service, from, to])
            return db.changesCount
        }
    }

    // MARK: reading

    /// Up to `limit` events above `floor` that `service` has not acked, of `types` ("*" = all),
    /// in seq order.
    func pending(_ service: String, types: Set<String>, above floor: Int64, limit: Int) async throws -> [Pending] {
        let typeFilter = types.contains("*") ? "" : "AND e.event IN (\(types.map { _ in "?" }.joined(separator: ",")))"
        var values: [(any DatabaseValueConvertible)?] = [floor, service]
        if !types.contains("*") { values += types.sorted().map { $0 as (any DatabaseValueConvertible)? } }
        let sql = """
            SELECT e.seq, e.id, e.event, e.code, e.pile, e.gun, e.lane, e.tradeSerial, e.receivedAt, e.payload FROM outbox_events e
            WHERE e.seq > ? AND NOT EXISTS (SELECT 1 FROM outbox_progress p WHERE p.service = ? AND p.seq = e.seq) \(typeFilter)
            ORDER BY e.seq LIMIT \(limit)
            """
        let arguments = StatementArguments(values)
        return try await database.read { db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map { Pending(seq: $0["seq"], event: Self.event(row: $0)) }
        }
    }

    /// A stored event as it was appended (a pile id that no longer parses becomes 0, which
    /// routes like any pile: the event is not lost).
    static func event(row: Row) -> OutboxEvent {
        let code: Int? = row["code"]
        let serial: String? = row["tradeSerial"]
        return OutboxEvent(
            id: row["id"], event: row["event"], code: code.flatMap { UInt8(exactly: $0) },
            pile: PileID(row["pile"] as String) ?? PileID(raw: 0), gun: row["gun"], lane: row["lane"],
            tradeSerial: serial.flatMap { TradeSerial($0) }, receivedAt: Date(timeIntervalSince1970: row["receivedAt"]),
            payload: ByteBuffer(string: row["payload"] as String))
    }

    /// Stored events, pending counts per service and type (above each service's floor) and the
    /// creation time of each service's oldest pending event.
    func pendingCounts(services: [String: Set<String>], floors: [String: Int64]) async throws
        -> (events: Int, pending: [String: [String: Int]], oldestCreatedAt: [String: Double])
    {
        try await database.read { db in
            let total = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM outbox_events") ?? 0
            var pending: [String: [String: Int]] = [:]
            var oldest: [String: Double] = [:]
            for (service, types) in services {
                let rows = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT e.event AS event, COUNT(*) AS n, MIN(e.createdAt) AS oldest FROM outbox_events e
                        WHERE e.seq > ? AND NOT EXISTS (SELECT 1 FROM outbox_progress p WHERE p.service = ? AND p.seq = e.seq)
                        GROUP BY e.event
                        """, arguments: [floors[service] ?? 0, service])
                var perType: [String: Int] = [:]
                for r in rows {
                    let event: String = r["event"]
                    guard types.contains("*") || types.contains(event) else { continue }
                    perType[event] = r["n"]
                    let o: Double = r["oldest"]
                    oldest[service] = min(oldest[service] ?? o, o)
                }
                pending[service] = perType
            }
            return (total, pending, oldest)
        }
    }

    /// A page of stored events after `after`, with whether `service` has acked each.
    func events(service: String?, after: Int64, limit: Int) async throws -> [Outbox.StoredEvent] {
        try await database.read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT e.*, (SELECT COUNT(*) FROM outbox_progress p WHERE p.service = ? AND p.seq = e.seq) AS done
                    FROM outbox_events e WHERE e.seq > ? ORDER BY e.seq LIMIT ?
                    """, arguments: [service ?? "", after, limit])
            return rows.map { r in
                Outbox.StoredEvent(
                    seq: r["seq"], id: r["id"], event: r["event"], pile: r["pile"], lane: r["lane"], tradeSerial: r["tradeSerial"],
                    createdAt: Date(timeIntervalSince1970: r["createdAt"]), delivered: service == nil ? nil : (r["done"] as Int) > 0,
                    payload: (try? JSONValue.parse(r["payload"] as String)) ?? .null)
            }
        }
    }

    // MARK: closing

    /// Checkpoints the WAL into `outbox.sqlite` (which then holds everything alone) and closes.
    func checkpointAndClose() async {
        await SQLiteStore.checkpointAndClose(database, what: "outbox", logger: logger)
    }

    /// Closes without a checkpoint (a start-up that failed after opening).
    func close() {
        try? database.close()
    }
}
