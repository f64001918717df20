import Foundation
import GRDB
import Logging
import NIOConcurrencyHelpers
import YKC

/// Commands waiting for offline piles (`QueuedCommand`), in the registry's SQLite database
/// (`pilegate.sqlite`, table `queued_commands`) and, without their arguments, in memory: a login
/// asks "anything queued for this pile?" of a dictionary under a lock, never of SQLite, and the
/// caps are checked there too.
///
/// Every write is committed with `synchronous = FULL` (the WAL synced before the commit
/// returns), although the registry's connection otherwise runs `NORMAL`: a queued command that
/// was answered 202 must not vanish, and the mark that a command was taken for sending must be
/// on disk before the frame goes out, or a power cut could send it twice.
///
/// Each command is claimed in memory before its durable change (taken, cancelled, expired), so
/// a cancel racing the delivery, or the sweeper racing a login, acts on it once.
final class QueuedCommandStore: Sendable {
    /// How many commands may wait: per pile and for the whole gateway.
    struct Limits: Sendable {
        var perPile: Int
        var total: Int
    }

    /// Why a command could not be queued.
    enum Refusal: Error, Sendable {
        case pileFull(Int)
        case gatewayFull(Int)
    }

    /// What became of a cancel.
    enum Cancelled: Sendable {
        case cancelled(QueuedCommand)
        case notFound
        /// Already taken for sending (or being reported): it can no longer be called back.
        case busy
    }

    /// A command in memory: everything but its arguments, and who holds it.
    private struct Entry: Sendable {
        var command: QueuedCommand
        var claimed: Bool
    }

    private struct State: Sendable {
        /// Per pile, in queue order.
        var piles: [PileID: [Entry]] = [:]
        var total = 0
        /// The earliest `expiresAt` among waiting commands when last computed (the sweeper
        /// skips its scan before then).
        var nextExpiry: Date = .distantPast
    }

    private let database: DatabasePool
    private let state = NIOLockedValueBox(State())
    /// Commands that were taken for sending before the last stop, with the result event's data
    /// if it was recorded: the queue reports them once at start (`QueuedCommands.recover`).
    let recovered: [(command: QueuedCommand, outcome: String?)]

    /// Migrates the table and loads every command.
    init(database: DatabasePool, logger: Logger) throws {
        self.database = database
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-queued-commands") { db in
            try db.execute(
                sql: """
                    CREATE TABLE queued_commands (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        id TEXT NOT NULL UNIQUE,
                        pile TEXT NOT NULL, command TEXT NOT NULL, args TEXT NOT NULL, lane TEXT NOT NULL,
                        timeout REAL, queuedAt REAL NOT NULL, expiresAt REAL NOT NULL,
                        takenAt REAL, outcome TEXT
                    );
                    CREATE INDEX queued_commands_pile ON queued_commands(pile, seq);
                    """)
        }
        try migrator.migrate(database)
        let rows = try database.read { db in
            try Row.fetchAll(
                db, sql: "SELECT seq, id, pile, command, lane, timeout, queuedAt, expiresAt, takenAt, outcome FROM queued_commands ORDER BY seq")
        }
        var loaded = State()
        var recovered: [(QueuedCommand, String?)] = []
        for row in rows {
            let command = Self.command(row)
            guard let pile = PileID(command.pile) else {
                logger.error("a queued command names an invalid pile and was skipped", metadata: ["id": "\(command.id)", "pile": "\(command.pile)"])
                continue
            }
            if command.takenAt != nil {
                recovered.append((command, row["outcome"]))
                loaded.piles[pile, default: []].append(Entry(command: command, claimed: true))
            } else {
                loaded.piles[pile, default: []].append(Entry(command: command, claimed: false))
            }
            loaded.total += 1
        }
        state.withLockedValue { $0 = loaded }
        self.recovered = recovered
    }

    private static func command(_ row: Row, args: Bool = false) -> QueuedCommand {
        let taken: Double? = row["takenAt"]
        return QueuedCommand(
            id: row["id"], seq: row["seq"], pile: row["pile"], command: row["command"], args: args ? row["args"] : nil, lane: row["lane"],
            timeout: row["timeout"], queuedAt: Date(timeIntervalSince1970: row["queuedAt"]),
            expiresAt: Date(timeIntervalSince1970: row["expiresAt"]), takenAt: taken.map { Date(timeIntervalSince1970: $0) })
    }

    /// Runs `body` in a transaction committed with `synchronous = FULL` (see the type's comment).
    private func durableWrite<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await database.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            defer { try? db.execute(sql: "PRAGMA synchronous = NORMAL") }
            var result: T?
            try db.inTransaction {
                result = try body(db)
                return .commit
            }
            guard let result else { throw DatabaseError(resultCode: .SQLITE_ERROR, message: "transaction returned nothing") }
            return result
        }
    }

    // MARK: counting

    var total: Int { state.withLockedValue { $0.total } }

    /// Whether `pile` has a command waiting to be sent (memory only: asked at every login).
    func hasWaiting(_ pile: PileID) -> Bool {
        state.withLockedValue { $0.piles[pile]?.contains { !$0.claimed } ?? false }
    }

    /// Piles with a command waiting to be sent.
    func pilesWaiting() -> [PileID] {
        state.withLockedValue { s in s.piles.compactMap { pile, list in list.contains { !$0.claimed } ? pile : nil } }
    }

    // MARK: writing

    /// Stores a new command unless a cap is reached (checked and reserved under the lock, so
    /// concurrent requests cannot both take the last place).
    func add(_ command: QueuedCommand, pile: PileID, args: String, limits: Limits) async throws -> QueuedCommand {
        // A refusal is returned, not thrown, from the lock's closure: a typed-throws closure
        // there crashes the Swift 6.3 compiler (IRGen).
        let refusal = state.withLockedValue { s -> Refusal? in
            if (s.piles[pile]?.count ?? 0) >= limits.perPile { return .pileFull(limits.perPile) }
            if s.total >= limits.total { return .gatewayFull(limits.total) }
            s.total += 1
            return nil
        }
        if let refusal { throw refusal }
        let stored: QueuedCommand
        do {
            stored = try await durableWrite { db in
                try db.execute(
                    sql: """
                        INSERT INTO queued_commands (id, pile, command, args, lane, timeout, queuedAt, expiresAt)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        command.id, command.pile, command.command, args, command.lane, command.timeout,
                        command.queuedAt.timeIntervalSince1970, command.expiresAt.timeIntervalSince1970,
                    ])
                var c = command
                c.seq = db.lastInsertedRowID
                return c
            }
        } catch {
            state.withLockedValue { $0.total -= 1 }
            throw error
        }
        state.withLockedValue { s in
            // Keep queue order (seq) even if two adds for one pile committed out of call order.
            var list = s.piles[pile] ?? []
            let at = list.firstIndex { $0.command.seq > stored.seq } ?? list.count
            list.insert(Entry(command: stored, claimed: false), at: at)
            s.piles[pile] = list
            s.nextExpiry = min(s.nextExpiry, stored.expiresAt)
        }
        return stored
    }

    /// Claims the oldest waiting command of `pile` (no one else will act on it), or nil.
    func claimNext(_ pile: PileID) -> QueuedCommand? {
        state.withLockedValue { s in
            guard var list = s.piles[pile], let i = list.firstIndex(where: { !$0.claimed }) else { return nil }
            list[i].claimed = true
            s.piles[pile] = list
            return list[i].command
        }
    }

    /// Gives a claimed command back (it waits again, in its place).
    func release(_ command: QueuedCommand) {
        update(command) { $0.claimed = false }
        state.withLockedValue { $0.nextExpiry = min($0.nextExpiry, command.expiresAt) }
    }

    private func update(_ command: QueuedCommand, _ change: (inout Entry) -> Void) {
        guard let pile = PileID(command.pile) else { return }
        state.withLockedValue { s in
            guard var list = s.piles[pile], let i = list.firstIndex(where: { $0.command.id == command.id }) else { return }
            change(&list[i])
            s.piles[pile] = list
        }
    }

    /// Records durably that a claimed command is taken for sending (it is never sent again);
    /// its arguments come back for the frame. Throws when the mark cannot be written: then the
    /// command must not be sent.
    func take(_ command: QueuedCommand, at now: Date) async throws -> (QueuedCommand, args: String) {
        let id = command.id
        let args = try await durableWrite { db -> String? in
            try db.execute(sql: "UPDATE queued_commands SET takenAt = ? WHERE id = ? AND takenAt IS NULL", arguments: [now.timeIntervalSince1970, id])
            guard db.changesCount == 1 else { return nil }
            return try String.fetchOne(db, sql: "SELECT args FROM queued_commands WHERE id = ?", arguments: [id])
        }
        guard let args else { throw DatabaseError(resultCode: .SQLITE_NOTFOUND, message: "queued command \(id) is gone or already taken") }
        var taken = command
        taken.takenAt = now
        update(command) { $0.command.takenAt = now }
        return (taken, args)
    }

    /// Records a taken command's result event (its data), so a restart before the event is
    /// stored in the outbox publishes the result rather than `unknown`.
    func recordOutcome(_ id: String, data: String) async throws {
        try await durableWrite { db in
            try db.execute(sql: "UPDATE queued_commands SET outcome = ? WHERE id = ?", arguments: [data, id])
        }
    }

    /// Deletes a command whose final event (result, expiry) is stored, or that was cancelled.
    func remove(_ command: QueuedCommand) async throws {
        let id = command.id
        try await durableWrite { db in
            try db.execute(sql: "DELETE FROM queued_commands WHERE id = ?", arguments: [id])
        }
        forget(command)
    }

    private func forget(_ command: QueuedCommand) {
        guard let pile = PileID(command.pile) else { return }
        state.withLockedValue { s in
            guard var list = s.piles[pile], let i = list.firstIndex(where: { $0.command.id == command.id }) else { return }
            list.remove(at: i)
            s.piles[pile] = list.isEmpty ? nil : list
            s.total -= 1
        }
    }

    /// Cancels a waiting command of `pile` (not one already taken for sending).
    func cancel(pile: PileID, id: String) async throws -> Cancelled {
        let claimed = state.withLockedValue { s -> Cancelled in
            guard var list = s.piles[pile], let i = list.firstIndex(where: { $0.command.id == id }) else { return .notFound }
            guard !list[i].claimed else { return .busy }
            list[i].claimed = true
            s.piles[pile] = list
            return .cancelled(list[i].command)
        }
        guard case .cancelled(let command) = claimed else { return claimed }
        do {
            try await remove(command)
        } catch {
            release(command)
            throw error
        }
        return claimed
    }

    /// Claims every waiting command whose `deliverWithin` has passed at `now`.
    func claimExpired(now: Date) -> [QueuedCommand] {
        state.withLockedValue { s in
            guard s.nextExpiry <= now else { return [] }
            var out: [QueuedCommand] = []
            var next = Date.distantFuture
            for (pile, var list) in s.piles {
                var changed = false
                for i in list.indices where !list[i].claimed {
                    if list[i].command.isExpired(at: now) {
                        list[i].claimed = true
                        changed = true
                        out.append(list[i].command)
                    } else {
                        next = min(next, list[i].command.expiresAt)
                    }
                }
                if changed { s.piles[pile] = list }
            }
            s.nextExpiry = next
            return out.sorted { $0.seq < $1.seq }
        }
    }

    // MARK: reading

    /// A pile's commands in queue order, with their arguments (for the admin API).
    func list(pile: PileID) async throws -> [QueuedCommand] {
        let text = pile.description
        return try await database.read { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM queued_commands WHERE pile = ? ORDER BY seq", arguments: [text]
            ).map { Self.command($0, args: true) }
        }
    }
}
