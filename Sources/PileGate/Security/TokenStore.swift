import Crypto
import Foundation
import GRDB
import Logging
import NIOConcurrencyHelpers

/// The API's bearer tokens: stored hashed in the registry's SQLite database (`api_tokens`), served
/// from memory.
///
/// A token's secret is `pgt_` + 43 base64url characters (32 random bytes from the system's
/// CSPRNG); only its SHA-256 is stored, and it is shown once, by `create`. An unsalted hash is
/// enough for 256-bit random secrets (no dictionary to attack), and keeps lookup one hash and one
/// dictionary probe. Requests never touch SQLite: `authenticate` reads the in-memory table, which
/// is rebuilt after every change made through this store, and — for changes made by another
/// process on the same data directory (`pilegate tokens … --data DIR`) — within `refreshInterval`
/// by polling a one-row generation counter that every change bumps.
///
/// Kept behind this one type so cluster mode can back it by a shared KV instead.
public final class TokenStore: Sendable {
    private let database: DatabasePool
    private let cache = NIOLockedValueBox(Cache())
    private let logger: Logger

    struct Cache {
        /// By the first 8 bytes of the hash; the full hash is compared in constant time.
        var byPrefix: [UInt64: [(hash: [UInt8], token: APIToken)]] = [:]
        var tokens: [APIToken] = []
        var generation: Int64 = -1
    }

    /// The store on an open database (the gateway passes the registry's).
    public init(database: DatabasePool, logger: Logger) throws {
        self.database = database
        self.logger = logger
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-api-tokens") { db in
            try db.execute(
                sql: """
                    CREATE TABLE api_tokens (
                        name TEXT PRIMARY KEY NOT NULL,
                        hash BLOB NOT NULL UNIQUE,
                        scopes TEXT NOT NULL,
                        lanes TEXT, services TEXT, commands TEXT,
                        createdAt REAL NOT NULL
                    );
                    CREATE TABLE api_token_generation (id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL);
                    INSERT INTO api_token_generation (id, generation) VALUES (1, 0);
                    """)
        }
        try migrator.migrate(database)
        try reloadNow()
    }

    /// Opens `directory/pilegate.sqlite` directly (the CLI's `--data` mode); safe while a gateway
    /// runs on the same directory (SQLite WAL; the gateway picks the change up by polling).
    public convenience init(directory: String, logger: Logger = Logger(label: "pilegate-tokens")) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var config = Configuration()
        config.busyMode = .timeout(5)
        let pool = try DatabasePool(path: (directory as NSString).appendingPathComponent("pilegate.sqlite"), configuration: config)
        try self.init(database: pool, logger: logger)
    }

    /// No token at all: the API then runs without bearer authentication (see `APIAuthenticator`).
    public var isEmpty: Bool { cache.withLockedValue { $0.tokens.isEmpty } }

    /// All tokens by name (never secrets).
    public func list() -> [APIToken] { cache.withLockedValue { $0.tokens } }

    /// The token whose secret this is, or nil. Memory only; one SHA-256 per call.
    public func authenticate(secret: some StringProtocol) -> APIToken? {
        guard secret.utf8.count <= 256 else { return nil }
        let hash = Array(SHA256.hash(data: Array(secret.utf8)))
        let prefix = Self.prefix(hash)
        let candidates = cache.withLockedValue { $0.byPrefix[prefix] } ?? []
        for c in candidates where Self.constantTimeEqual(c.hash, hash) { return c.token }
        return nil
    }

    /// Stores a new token and returns it with its secret, which is not kept anywhere.
    public func create(_ token: APIToken) async throws -> (token: APIToken, secret: String) {
        try token.validate()
        var bytes = [UInt8](repeating: 0, count: 32)
        var rng = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = rng.next() }
        let secret = "pgt_" + Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        let hash = Data(SHA256.hash(data: Array(secret.utf8)))
        var normalized = token
        normalized.scopes = Array(Set(token.scopes)).sorted()
        normalized.createdAt = Date(timeIntervalSince1970: token.createdAt.timeIntervalSince1970.rounded(.down))
        let stored = normalized
        do {
            try await database.write { db in
                try db.execute(
                    sql: "INSERT INTO api_tokens (name, hash, scopes, lanes, services, commands, createdAt) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    arguments: [
                        stored.name, hash, stored.scopes.map(\.rawValue).joined(separator: ","), Self.joined(stored.lanes),
                        Self.joined(stored.services), Self.joined(stored.commands), stored.createdAt.timeIntervalSince1970,
                    ])
                try db.execute(sql: "UPDATE api_token_generation SET generation = generation + 1 WHERE id = 1")
            }
        } catch let e as DatabaseError where e.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
            throw APITokenError(code: "token_exists", message: "a token named '\(token.name)' already exists; revoke it first")
        }
        try await reload()
        logger.notice("API token created", metadata: ["token": "\(stored.name)", "scopes": "\(stored.scopes.map(\.rawValue))"])
        return (stored, secret)
    }

    /// Deletes a token; returns whether it existed. Requests with it fail from the next one on
    /// (in this process) or within `refreshInterval` (in a gateway on the same directory).
    @discardableResult
    public func revoke(name: String) async throws -> Bool {
        let changed = try await database.write { db -> Int in
            try db.execute(sql: "DELETE FROM api_tokens WHERE name = ?", arguments: [name])
            let n = db.changesCount
            if n > 0 { try db.execute(sql: "UPDATE api_token_generation SET generation = generation + 1 WHERE id = 1") }
            return n
        }
        try await reload()
        if changed > 0 { logger.notice("API token revoked", metadata: ["token": "\(name.prefix(64))"]) }
        return changed > 0
    }

    /// How often `runRefreshLoop` looks for changes made by another process.
    public static let refreshInterval: TimeInterval = 1

    /// Re-reads the table when its generation changed since the last read.
    public func refreshIfChanged() async throws {
        let generation = try await database.read { db in try Int64.fetchOne(db, sql: "SELECT generation FROM api_token_generation") ?? 0 }
        if generation != cache.withLockedValue({ $0.generation }) { try await reload() }
    }

    /// Polls for outside changes until cancelled (one tiny read per interval, never per request).
    public func runRefreshLoop(interval: TimeInterval = TokenStore.refreshInterval) async {
        while !Task.isCancelled {
            try? await Task.sleep(nanoseconds: UInt64(interval * 1e9))
            if Task.isCancelled { break }
            do { try await refreshIfChanged() } catch {
                logger.error("token refresh failed; keeping the tokens loaded before", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Reads the table on GRDB's own queue (never blocking a Swift concurrency thread).
    private func reload() async throws {
        let (generation, rows) = try await database.read { db in try Self.fetch(db) }
        install(generation: generation, rows: rows)
    }

    private func reloadNow() throws {
        let (generation, rows) = try database.read { db in try Self.fetch(db) }
        install(generation: generation, rows: rows)
    }

    /// A stored token and its hash, read off the database.
    struct Stored: Sendable {
        var hash: [UInt8]
        var token: APIToken
    }

    private static func fetch(_ db: Database) throws -> (Int64, [Stored]) {
        let generation = try Int64.fetchOne(db, sql: "SELECT generation FROM api_token_generation") ?? 0
        var out: [Stored] = []
        for row in try Row.fetchAll(db, sql: "SELECT * FROM api_tokens ORDER BY name") {
            let hash: Data = row["hash"]
            let scopeText: String = row["scopes"]
            let token = APIToken(
                name: row["name"], scopes: scopeText.split(separator: ",").compactMap { APIScope(rawValue: String($0)) }.sorted(),
                lanes: split(row["lanes"]), services: split(row["services"]), commands: split(row["commands"]),
                createdAt: Date(timeIntervalSince1970: row["createdAt"]))
            guard hash.count == 32 else { continue }
            out.append(Stored(hash: Array(hash), token: token))
        }
        return (generation, out)
    }

    private func install(generation: Int64, rows: [Stored]) {
        var next = Cache()
        next.generation = generation
        for row in rows {
            next.byPrefix[Self.prefix(row.hash), default: []].append((row.hash, row.token))
            next.tokens.append(row.token)
        }
        cache.withLockedValue { $0 = next }
    }

    /// Lists are stored as JSON arrays (a lane may be "", so a separator would be ambiguous).
    private static func joined(_ list: [String]?) -> String? {
        guard let list, let data = try? JSONEncoder().encode(list) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    private static func split(_ text: String?) -> [String]? {
        guard let text else { return nil }
        return (try? JSONDecoder().decode([String].self, from: Data(text.utf8))) ?? []
    }

    private static func prefix(_ hash: [UInt8]) -> UInt64 {
        var v: UInt64 = 0
        for b in hash.prefix(8) { v = v << 8 | UInt64(b) }
        return v
    }

    /// Equal-length comparison whose time does not depend on where the bytes differ.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}
