import Foundation
import GRDB
import Logging

/// Opens the gateway's SQLite stores (`pilegate.sqlite`, `outbox.sqlite`) so that a damaged or
/// emptied file is never taken for a new database.
///
/// SQLite opens a 0-byte file as a valid, empty database, and a store whose data is still in
/// its `-wal` file looks empty when the main file was copied alone: opened as usual, the
/// registry or the pending bills would vanish without a word. So an existing file must hold a
/// schema and pass `prepare` (migrations, recovery reads); otherwise start-up stops with a
/// message naming the file — unless `freshStore` is set, which moves the old files aside (never
/// deletes them) and starts with an empty store.
enum SQLiteStore {
    /// Why a store could not be opened, in one sentence naming the file and the way out.
    struct OpenError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// Opens `directory/file` as a WAL pool and runs `prepare` on it.
    static func open(
        directory: String, file: String, what: String, fresh: Bool, configuration: Configuration, logger: Logger,
        prepare: (DatabasePool) throws -> Void
    ) throws -> DatabasePool {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = (directory as NSString).appendingPathComponent(file)
        let existed = FileManager.default.fileExists(atPath: path)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        let problem: String
        do {
            let pool = try DatabasePool(path: path, configuration: configuration)
            do {
                if existed {
                    let objects = try pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM sqlite_master") ?? 0 }
                    guard objects > 0 else {
                        try? pool.close()
                        throw Empty()
                    }
                }
                try prepare(pool)
                return pool
            } catch {
                try? pool.close()
                throw error
            }
        } catch is Empty {
            problem = "exists but is empty (\(size) bytes, no tables): the \(what) it held is missing"
        } catch {
            problem = "cannot be read (\(Self.describe(error)))"
        }
        guard fresh else {
            throw OpenError(
                message: "the \(what) store \(path) \(problem). Restore it (with its -wal file, if any) from a backup, "
                    + "or start with --fresh-store (freshStore, PILEGATE_FRESH_STORE=true) to move it aside and begin empty")
        }
        let aside = path + ".damaged-" + String(Int(Date().timeIntervalSince1970))
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            try FileManager.default.moveItem(atPath: path + suffix, toPath: aside + suffix)
        }
        logger.warning(
            "store moved aside; starting with a new, empty one (freshStore)",
            metadata: ["store": "\(path)", "problem": "\(problem)", "moved_to": "\(aside)"])
        let pool = try DatabasePool(path: path, configuration: configuration)
        try prepare(pool)
        return pool
    }

    private struct Empty: Error {}

    static func describe(_ error: any Error) -> String {
        if let e = error as? DatabaseError { return e.message.map { "SQLite: \($0)" } ?? "SQLite error \(e.resultCode.rawValue)" }
        return "\(error)"
    }

    /// Copies the WAL into the main file and empties it (a clean shutdown leaves one file that
    /// holds everything, safe to copy alone), then closes the pool.
    ///
    /// Runs on a dispatch queue, never on a Swift concurrency thread: closing waits for readers
    /// to finish (a reader that meets the checkpoint may wait out its busy timeout), and the
    /// cooperative pool has only a thread per core, which every other task needs meanwhile.
    static func checkpointAndClose(_ pool: DatabasePool, what: String, logger: Logger) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                do {
                    try pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
                } catch {
                    logger.warning("\(what) checkpoint at shutdown failed", metadata: ["error": "\(describe(error))"])
                }
                do { try pool.close() } catch {
                    logger.warning("\(what) store did not close", metadata: ["error": "\(describe(error))"])
                }
                done.resume()
            }
        }
    }
}
