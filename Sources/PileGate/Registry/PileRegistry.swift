import Foundation
import GRDB
import Logging
import NIOConcurrencyHelpers
import YKC

/// Every pile the gateway has seen or been told about, in SQLite (GRDB, WAL).
///
/// Sessions never wait for the database: they enqueue updates, which a background task writes in
/// one transaction every `flushInterval`. The set of known pile ids is kept in memory for the
/// `registry` login policy, so a login never reads SQLite either.
public final class PileRegistry: Sendable {
    public let database: DatabasePool
    private let pending = NIOLockedValueBox<[Update]>([])
    private let known = NIOLockedValueBox<Set<PileID>>([])
    /// Told of every provisioning and removal made through this node's API (cluster mode shares them).
    private let provisioningHooks = NIOLockedValueBox<[@Sendable (ProvisioningChange) -> Void]>([])
    private let logger: Logger

    /// The page cache of each registry connection, in KiB (SQLite's default is 2,000).
    static let pageCacheKiB = 256

    enum Update: Sendable {
        case login(PileSessionInfo, node: String)
        case offline(PileID, reason: OfflineReason, at: Date)
    }

    /// A row of the registry as the admin API shows it.
    public struct Record: Codable, Sendable, Equatable {
        public var id: String
        public var pileType: String?
        public var gunCount: Int?
        public var protocolVersion: Int?
        public var firmware: String?
        public var networkType: String?
        public var sim: String?
        public var carrier: String?
        public var firstSeen: Date?
        public var lastLogin: Date?
        public var lastAddress: String?
        public var online: Bool
        public var offlineReason: String?
        public var offlineAt: Date?
        public var provisioned: Bool
        public var lane: String?
        public var node: String?
    }

    /// Opens (creating if needed) `directory/pilegate.sqlite`. An existing file that is empty or
    /// unreadable stops start-up unless `fresh` (see `SQLiteStore`).
    public init(directory: String, fresh: Bool = false, logger: Logger) throws {
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            // A smaller page cache than SQLite's 2 MB per connection: the registry is written in
            // batches by primary key and read by the admin API, and pages it misses come from
            // the OS cache; 2 MB of cache per connection was ≈ 110 B of RSS per pile at 19,000.
            try db.execute(sql: "PRAGMA cache_size = -\(Self.pageCacheKiB)")
        }
        self.logger = logger
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-piles") { db in
            try db.execute(
                sql: """
                    CREATE TABLE piles (
                        id TEXT PRIMARY KEY NOT NULL,
                        pileType TEXT, gunCount INTEGER, protocolVersion INTEGER, firmware TEXT,
                        networkType TEXT, sim TEXT, carrier TEXT,
                        firstSeen REAL, lastLogin REAL, lastAddress TEXT,
                        online INTEGER NOT NULL DEFAULT 0, offlineReason TEXT, offlineAt REAL,
                        provisioned INTEGER NOT NULL DEFAULT 0, lane TEXT, node TEXT
                    );
                    CREATE INDEX piles_online ON piles(online, id);
                    """)
        }
        var ids: [String] = []
        database = try SQLiteStore.open(
            directory: directory, file: "pilegate.sqlite", what: "pile registry", fresh: fresh, configuration: config,
            logger: logger
        ) { pool in
            try migrator.migrate(pool)
            ids = try pool.read { db in try String.fetchAll(db, sql: "SELECT id FROM piles") }
        }
        known.withLockedValue { set in
            for s in ids { if let id = PileID(s) { set.insert(id) } }
        }
    }

    /// Checkpoints and closes the database (the gateway's last step with it at shutdown).
    public func close() async {
        await SQLiteStore.checkpointAndClose(database, what: "registry", logger: logger)
    }

    /// Why the registry cannot store updates right now (the last flush failed), for `/readyz`.
    public var problem: String? { failure.withLockedValue { $0 } }
    private let failure = NIOLockedValueBox<String?>(nil)

    /// After a crash or restart nothing is online: mark leftovers offline.
    public func markAllOffline(reason: String) throws {
        let now = Date().timeIntervalSince1970
        try database.write { db in
            try db.execute(
                sql: "UPDATE piles SET online = 0, offlineReason = ?, offlineAt = ? WHERE online = 1",
                arguments: [reason, now])
        }
    }

    public func isKnown(_ id: PileID) -> Bool { known.withLockedValue { $0.contains(id) } }
    public var knownCount: Int { known.withLockedValue { $0.count } }

    func recordLogin(_ info: PileSessionInfo, node: String) {
        known.withLockedValue { _ = $0.insert(info.pileId) }
        pending.withLockedValue { $0.append(.login(info, node: node)) }
    }

    func recordOffline(_ id: PileID, reason: OfflineReason) {
        pending.withLockedValue { $0.append(.offline(id, reason: reason, at: Date())) }
    }

    /// Writes everything queued so far in one transaction. Returns how many updates were written.
    @discardableResult
    public func flush() async throws -> Int {
        // The queue is handed over whole and starts again empty: keeping its capacity would hold
        // the largest batch ever queued (a login wave: ≈ 150 B a pile) for the process's life.
        let batch = pending.withLockedValue { p -> [Update] in
            let b = p
            p = []
            return b
        }
        guard !batch.isEmpty else { return 0 }
        do {
            try await write(batch)
        } catch {
            // Keep the updates for the next round rather than losing them.
            pending.withLockedValue { $0.insert(contentsOf: batch, at: 0) }
            if !(error is CancellationError) {
                failure.withLockedValue { $0 = "pilegate.sqlite cannot commit: \(SQLiteStore.describe(error))" }
            }
            throw error
        }
        failure.withLockedValue { $0 = nil }
        return batch.count
    }

    private func write(_ batch: [Update]) async throws {
        try await database.write { db in
            for update in batch {
                switch update {
                case .login(let s, let node):
                    let l = s.login
                    let now = s.loggedInAt.timeIntervalSince1970
                    // Cached statements: a login wave writes tens of thousands of rows.
                    try db.cachedStatement(
                        sql: """
                            INSERT INTO piles (id, pileType, gunCount, protocolVersion, firmware, networkType, sim, carrier,
                                               firstSeen, lastLogin, lastAddress, online, offlineReason, offlineAt, lane, node)
                            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, NULL, ?, ?)
                            ON CONFLICT(id) DO UPDATE SET
                                pileType = excluded.pileType, gunCount = excluded.gunCount,
                                protocolVersion = excluded.protocolVersion, firmware = excluded.firmware,
                                networkType = excluded.networkType, sim = excluded.sim, carrier = excluded.carrier,
                                lastLogin = excluded.lastLogin, lastAddress = excluded.lastAddress, online = 1,
                                offlineReason = NULL, offlineAt = NULL, lane = excluded.lane, node = excluded.node,
                                firstSeen = COALESCE(piles.firstSeen, excluded.firstSeen)
                            """
                    ).execute(
                        arguments: [
                            s.pileId.description, l.pileType.name ?? String(l.pileType.rawValue), Int(l.gunCount),
                            Int(l.protocolVersion), l.firmwareVersion, l.networkType.name ?? String(l.networkType.rawValue),
                            l.sim.description, l.carrier.name ?? String(l.carrier.rawValue), now, now, s.remoteAddress,
                            s.lane, node,
                        ])
                case .offline(let id, let reason, let at):
                    try db.cachedStatement(sql: "UPDATE piles SET online = 0, offlineReason = ?, offlineAt = ? WHERE id = ?").execute(
                        arguments: [reason.rawValue, at.timeIntervalSince1970, id.description])
                }
            }
        }
    }

    /// Runs the flush loop until cancelled; a failed flush is logged and retried next round
    /// (the batch is lost only for registry bookkeeping, never for bills, which use the outbox).
    public func runFlushLoop(interval: TimeInterval) async {
        while !Task.isCancelled {
            try? await Task.sleep(nanoseconds: UInt64(interval * 1e9))
            if Task.isCancelled { break }
            do { try await flush() } catch is CancellationError {
                // Shutdown: the owner's final flush writes what this round put back.
            } catch {
                logger.error("registry flush failed", metadata: ["error": "\(SQLiteStore.describe(error))"])
            }
        }
        // The final flush is the owner's (Gateway.shutdown), outside this cancelled task.
    }

    /// A pile provisioned or removed by hand.
    public enum ProvisioningChange: Sendable, Equatable {
        case provisioned(PileID)
        case removed(PileID)
    }

    /// Calls `hook` after every `provision` and `remove` with `announce` (the API's).
    public func onProvisioningChange(_ hook: @escaping @Sendable (ProvisioningChange) -> Void) {
        provisioningHooks.withLockedValue { $0.append(hook) }
    }

    private func announce(_ change: ProvisioningChange) {
        for hook in provisioningHooks.withLockedValue({ $0 }) { hook(change) }
    }

    /// Adds or updates a pile by hand (provisioning for the `registry` login policy).
    /// `announce: false` for a change that came from the cluster, so it is not sent back.
    public func provision(_ id: PileID, announce: Bool = true) async throws {
        try await provision([id])
        if announce { self.announce(.provisioned(id)) }
    }

    /// Provisions many piles in one transaction (a cluster catching up on its shared list).
    public func provision(_ ids: [PileID]) async throws {
        guard !ids.isEmpty else { return }
        let now = Date().timeIntervalSince1970
        try await database.write { db in
            let statement = try db.cachedStatement(
                sql: "INSERT INTO piles (id, provisioned, firstSeen) VALUES (?, 1, ?) ON CONFLICT(id) DO UPDATE SET provisioned = 1")
            for id in ids { try statement.execute(arguments: [id.description, now]) }
        }
        known.withLockedValue { set in for id in ids { set.insert(id) } }
    }

    /// Removes a pile from the registry; returns whether it existed.
    public func remove(_ id: PileID, announce: Bool = true) async throws -> Bool {
        let changed = try await database.write { db -> Int in
            try db.execute(sql: "DELETE FROM piles WHERE id = ?", arguments: [id.description])
            return db.changesCount
        }
        known.withLockedValue { _ = $0.remove(id) }
        if announce && changed > 0 { self.announce(.removed(id)) }
        return changed > 0
    }

    public func record(_ id: PileID) async throws -> Record? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM piles WHERE id = ?", arguments: [id.description]).map(Self.record)
        }
    }

    /// A page of records ordered by id; `online` filters when given.
    public func records(online: Bool?, after: String?, limit: Int) async throws -> [Record] {
        try await database.read { db in
            var sql = "SELECT * FROM piles WHERE id > ?"
            var args: [any DatabaseValueConvertible] = [after ?? ""]
            if let online {
                sql += " AND online = ?"
                args.append(online ? 1 : 0)
            }
            sql += " ORDER BY id LIMIT ?"
            args.append(limit)
            return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)).map(Self.record)
        }
    }

    public func countAll() async throws -> Int {
        try await database.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM piles") ?? 0 }
    }

    private static func record(_ row: Row) -> Record {
        func date(_ col: String) -> Date? { (row[col] as Double?).map { Date(timeIntervalSince1970: $0) } }
        return Record(
            id: row["id"], pileType: row["pileType"], gunCount: row["gunCount"], protocolVersion: row["protocolVersion"],
            firmware: row["firmware"], networkType: row["networkType"], sim: row["sim"], carrier: row["carrier"],
            firstSeen: date("firstSeen"), lastLogin: date("lastLogin"), lastAddress: row["lastAddress"],
            online: (row["online"] as Int?) == 1, offlineReason: row["offlineReason"], offlineAt: date("offlineAt"),
            provisioned: (row["provisioned"] as Int?) == 1, lane: row["lane"], node: row["node"])
    }
}
