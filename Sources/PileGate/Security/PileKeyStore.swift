import Atomics
import Foundation
import GRDB
import Logging
import NIOConcurrencyHelpers
import YKC
import YKCCipher

/// The per-pile 3DES keys for encrypted frames (encryption flag 0x01), kept in the registry's
/// SQLite database (table `pile_keys`) and in memory.
///
/// Sessions read keys without touching SQLite: a session caches its pile's `FrameCipher` and
/// looks again only when `version` has moved (one relaxed atomic load per encrypted frame). The
/// key text is never logged and never returned; the API shows `KeyFingerprint`.
///
/// An encrypted login carries the pile id inside the encrypted body, so the key cannot be looked
/// up by pile; `openLogin` tries the distinct configured keys instead (bounded by
/// `encryptedLoginKeyTrials`) and accepts only a key that is the one configured for the pile id
/// the decrypted login names.
public final class PileKeyStore: Sendable {
    /// A configured key as the API shows it: everything but the key.
    public struct View: Codable, Sendable, Equatable {
        public var pile: String
        public var mode: String
        public var padding: String
        /// 16 (2-key) or 24 (3-key).
        public var keyBytes: Int
        /// Whether a non-zero CBC IV was set (the IV is not shown either).
        public var customIV: Bool
        /// First hex digits of SHA-256 over the 24-byte key.
        public var fingerprint: String
        public var updatedAt: Date
    }

    private struct Entry: Sendable {
        var cipher: FrameCipher
        var view: View
    }

    private struct State: Sendable {
        var byPile: [PileID: Entry] = [:]
        /// Each distinct cipher once, in the order first configured: the candidates for logins.
        var distinct: [FrameCipher] = []
    }

    private let database: DatabasePool
    private let state = NIOLockedValueBox(State())
    private let changes = ManagedAtomic(0)

    /// Creates the table if needed and loads every key. A stored row that no longer makes a
    /// valid cipher is skipped with an error log naming the pile (not the key).
    public init(database: DatabasePool, logger: Logger) throws {
        self.database = database
        try database.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS pile_keys (
                        pile TEXT PRIMARY KEY NOT NULL,
                        key TEXT NOT NULL, mode TEXT NOT NULL, padding TEXT NOT NULL, iv TEXT,
                        updatedAt REAL NOT NULL
                    )
                    """)
        }
        let rows = try database.read { db in try Row.fetchAll(db, sql: "SELECT * FROM pile_keys") }
        var loaded = State()
        for row in rows {
            let pile: String = row["pile"]
            do {
                guard let id = PileID(pile) else { throw FrameCipherError.notHex(field: "pile") }
                let entry = try Self.entry(
                    pile: id, hexKey: row["key"], mode: row["mode"], padding: row["padding"], hexIV: row["iv"],
                    updatedAt: Date(timeIntervalSince1970: row["updatedAt"]))
                loaded.byPile[id] = entry
            } catch {
                logger.error("stored pile key is invalid and was skipped", metadata: ["pile": "\(pile)", "error": "\(error)"])
            }
        }
        loaded.distinct = Self.distinct(loaded.byPile)
        state.withLockedValue { $0 = loaded }
    }

    /// Moves whenever a key is set or removed; sessions re-read their key when it changes.
    public var version: Int { changes.load(ordering: .relaxed) }

    /// How many piles have a key.
    public var count: Int { state.withLockedValue { $0.byPile.count } }

    /// The cipher configured for `pile`, if any.
    public func cipher(for pile: PileID) -> FrameCipher? {
        state.withLockedValue { $0.byPile[pile]?.cipher }
    }

    /// The key as the API shows it.
    public func view(for pile: PileID) -> View? {
        state.withLockedValue { $0.byPile[pile]?.view }
    }

    /// Sets (or replaces) a pile's key. Validates first: an invalid key changes nothing.
    /// - Returns: the view of the new key and whether one existed before.
    public func set(
        pile: PileID, hexKey: String, mode: FrameCipher.Mode, padding: FrameCipher.Padding, hexIV: String?
    ) async throws -> (view: View, replaced: Bool) {
        let now = Date()
        let entry = try Self.entry(
            pile: pile, hexKey: hexKey, mode: mode.rawValue, padding: padding.rawValue, hexIV: hexIV, updatedAt: now)
        try await database.write { db in
            try db.execute(
                sql: """
                    INSERT INTO pile_keys (pile, key, mode, padding, iv, updatedAt) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT(pile) DO UPDATE SET key = excluded.key, mode = excluded.mode,
                        padding = excluded.padding, iv = excluded.iv, updatedAt = excluded.updatedAt
                    """,
                arguments: [pile.description, hexKey.lowercased(), mode.rawValue, padding.rawValue, hexIV?.lowercased(),
                            now.timeIntervalSince1970])
        }
        let replaced = state.withLockedValue { s -> Bool in
            let had = s.byPile.updateValue(entry, forKey: pile) != nil
            s.distinct = Self.distinct(s.byPile)
            return had
        }
        changes.wrappingIncrement(ordering: .relaxed)
        return (entry.view, replaced)
    }

    /// Removes a pile's key; returns whether it had one.
    public func remove(pile: PileID) async throws -> Bool {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM pile_keys WHERE pile = ?", arguments: [pile.description])
        }
        let removed = state.withLockedValue { s -> Bool in
            let had = s.byPile.removeValue(forKey: pile) != nil
            s.distinct = Self.distinct(s.byPile)
            return had
        }
        changes.wrappingIncrement(ordering: .relaxed)
        return removed
    }

    /// Opens an encrypted login (0x01) by trying at most `limit` distinct configured keys.
    ///
    /// A key is accepted only when the decrypted body is a valid login whose pile has exactly
    /// that key configured, so a pile cannot log in under a key set for another pile.
    /// - Returns: the pile's cipher and the decrypted frame, or nil when no key opens it.
    public func openLogin(_ frame: YKCFrame, limit: Int) -> (FrameCipher, YKCFrame)? {
        let candidates = state.withLockedValue { $0.distinct.prefix(limit) }
        for candidate in candidates {
            guard let plain = try? candidate.decrypt(frame: frame) else { continue }
            var body = plain.body
            guard let login = try? Login(decoding: &body), cipher(for: login.pileId) == candidate else { continue }
            return (candidate, plain)
        }
        return nil
    }

    private static func entry(
        pile: PileID, hexKey: String, mode: String, padding: String, hexIV: String?, updatedAt: Date
    ) throws -> Entry {
        guard let m = FrameCipher.Mode(rawValue: mode) else { throw PileKeyError.mode(mode) }
        guard let p = FrameCipher.Padding(rawValue: padding) else { throw PileKeyError.padding(padding) }
        let cipher = try FrameCipher(hexKey: hexKey, mode: m, padding: p, hexIV: hexIV)
        var customIV = false
        if let hexIV, let iv = FrameCipher.bytes(fromHex: hexIV) {
            customIV = iv.contains { byte in byte != 0 }
        }
        let view = View(
            pile: pile.description, mode: m.rawValue, padding: p.rawValue, keyBytes: hexKey.utf8.count / 2,
            customIV: customIV, fingerprint: cipher.fingerprint, updatedAt: updatedAt)
        return Entry(cipher: cipher, view: view)
    }

    private static func distinct(_ byPile: [PileID: Entry]) -> [FrameCipher] {
        var seen = Set<FrameCipher>()
        var out: [FrameCipher] = []
        for pile in byPile.keys.sorted(by: { $0.description < $1.description }) {
            if let c = byPile[pile]?.cipher, seen.insert(c).inserted { out.append(c) }
        }
        return out
    }
}

/// A stored or requested key setting that is not one of the known names.
public enum PileKeyError: Error, Equatable, Sendable, CustomStringConvertible {
    case mode(String)
    case padding(String)

    public var description: String {
        switch self {
        case .mode(let m):
            "mode must be one of \(FrameCipher.Mode.allCases.map(\.rawValue).joined(separator: ", ")), got '\(m)'"
        case .padding(let p):
            "padding must be one of \(FrameCipher.Padding.allCases.map(\.rawValue).joined(separator: ", ")), got '\(p)'"
        }
    }
}
