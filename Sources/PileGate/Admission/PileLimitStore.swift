import Foundation
import GRDB
import Logging
import NIOConcurrencyHelpers
import YKC

/// Per-pile overrides of the per-connection limits (`frameRatePerSecond`, `frameBurst`,
/// `byteRatePerSecond`, `byteBurst`) for piles whose firmware is chattier than the defaults
/// allow. Kept in the registry's SQLite database (table `pile_limits`) and in memory, so a login
/// reads a dictionary under a lock and never touches SQLite. A session applies its pile's
/// override once, when the login is accepted; a change reaches a pile at its next login.
public final class PileLimitStore: Sendable {
    /// An override as stored and shown: only the limits it sets; the rest follow the configuration.
    public struct Limits: Codable, Sendable, Equatable {
        public var frameRatePerSecond: Double?
        public var frameBurst: Double?
        public var byteRatePerSecond: Double?
        public var byteBurst: Double?

        public init(frameRatePerSecond: Double? = nil, frameBurst: Double? = nil, byteRatePerSecond: Double? = nil, byteBurst: Double? = nil) {
            self.frameRatePerSecond = frameRatePerSecond
            self.frameBurst = frameBurst
            self.byteRatePerSecond = byteRatePerSecond
            self.byteBurst = byteBurst
        }

        /// The accepted keys, in the order the API documents them.
        public static let keys = ["frameRatePerSecond", "frameBurst", "byteRatePerSecond", "byteBurst"]

        /// Reads an override from a JSON object: any subset of `keys`, each a finite number
        /// inside the configuration file's range for that limit. Unknown keys are refused by name.
        public init(json: JSONValue) throws(PileLimitError) {
            guard case .object(let fields) = json else { throw .notAnObject }
            let r = GatewayConfiguration.connectionLimitRanges
            for key in fields.keys.sorted() where !Self.keys.contains(key) {
                throw .unknownKey(String(key.prefix(64)))
            }
            func value(_ key: String, _ range: ClosedRange<Double>) throws(PileLimitError) -> Double? {
                guard let v = fields[key] else { return nil }
                guard case .number(let n) = v, n.isFinite else { throw .notANumber(key) }
                guard range.contains(n) else { throw .outOfRange(key, range) }
                return n
            }
            self.init(
                frameRatePerSecond: try value("frameRatePerSecond", r.frameRatePerSecond),
                frameBurst: try value("frameBurst", r.frameBurst),
                byteRatePerSecond: try value("byteRatePerSecond", r.byteRatePerSecond),
                byteBurst: try value("byteBurst", r.byteBurst))
            if isEmpty { throw .empty }
        }

        public var isEmpty: Bool {
            frameRatePerSecond == nil && frameBurst == nil && byteRatePerSecond == nil && byteBurst == nil
        }
    }

    private let database: DatabasePool
    private let state = NIOLockedValueBox([PileID: Limits]())

    /// Migrates the table and loads every override.
    public init(database: DatabasePool, logger: Logger) throws {
        self.database = database
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-pile-limits") { db in
            try db.execute(
                sql: """
                    CREATE TABLE pile_limits (
                        pile TEXT PRIMARY KEY NOT NULL,
                        frameRatePerSecond REAL, frameBurst REAL, byteRatePerSecond REAL, byteBurst REAL,
                        updatedAt REAL NOT NULL
                    )
                    """)
        }
        try migrator.migrate(database)
        let rows = try database.read { db in try Row.fetchAll(db, sql: "SELECT * FROM pile_limits") }
        var loaded: [PileID: Limits] = [:]
        for row in rows {
            let pile: String = row["pile"]
            guard let id = PileID(pile) else {
                logger.error("stored pile limits name an invalid pile and were skipped", metadata: ["pile": "\(pile)"])
                continue
            }
            loaded[id] = Limits(
                frameRatePerSecond: row["frameRatePerSecond"], frameBurst: row["frameBurst"],
                byteRatePerSecond: row["byteRatePerSecond"], byteBurst: row["byteBurst"])
        }
        state.withLockedValue { $0 = loaded }
    }

    /// How many piles have an override.
    public var count: Int { state.withLockedValue { $0.count } }

    /// The override for `pile`, if any (memory only).
    public func limits(for pile: PileID) -> Limits? {
        state.withLockedValue { $0[pile] }
    }

    /// Sets (or replaces) a pile's override; returns whether one existed before.
    public func set(pile: PileID, limits: Limits) async throws -> Bool {
        try await database.write { db in
            try db.execute(
                sql: """
                    INSERT INTO pile_limits (pile, frameRatePerSecond, frameBurst, byteRatePerSecond, byteBurst, updatedAt)
                    VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT(pile) DO UPDATE SET frameRatePerSecond = excluded.frameRatePerSecond,
                        frameBurst = excluded.frameBurst, byteRatePerSecond = excluded.byteRatePerSecond,
                        byteBurst = excluded.byteBurst, updatedAt = excluded.updatedAt
                    """,
                arguments: [pile.description, limits.frameRatePerSecond, limits.frameBurst, limits.byteRatePerSecond,
                            limits.byteBurst, Date().timeIntervalSince1970])
        }
        return state.withLockedValue { $0.updateValue(limits, forKey: pile) != nil }
    }

    /// Removes a pile's override; returns whether it had one.
    public func remove(pile: PileID) async throws -> Bool {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM pile_limits WHERE pile = ?", arguments: [pile.description])
        }
        return state.withLockedValue { $0.removeValue(forKey: pile) != nil }
    }
}

/// Why a per-pile limits body was refused (400 `invalid_limits`).
public enum PileLimitError: Error, Equatable, Sendable, CustomStringConvertible {
    case notAnObject
    case empty
    case unknownKey(String)
    case notANumber(String)
    case outOfRange(String, ClosedRange<Double>)

    public var description: String {
        switch self {
        case .notAnObject: "the body must be a JSON object"
        case .empty: "give at least one of \(PileLimitStore.Limits.keys.joined(separator: ", "))"
        case .unknownKey(let k): "unknown key '\(k)'; expected \(PileLimitStore.Limits.keys.joined(separator: ", "))"
        case .notANumber(let k): "\(k) must be a number"
        case .outOfRange(let k, let r): "\(k) must be within \(r.lowerBound)...\(r.upperBound)"
        }
    }
}
