import GRDB
import NIOConcurrencyHelpers
import NIOCore

/// Writes to a SQLite pool off the caller's thread, in order, batched: callers on a pile's event
/// loop enqueue and return at once; one task at a time drains the queue, one transaction per
/// batch. A write may carry a promise, completed once its transaction has committed (or failed),
/// for callers that must not go on before the row is durable. `flush()` waits for everything
/// queued so far (the store's owner calls it before the database closes).
final class SQLiteWriteQueue: Sendable {
    typealias Work = @Sendable (Database) throws -> Void

    private struct Item {
        var work: Work
        var done: EventLoopPromise<Void>?
    }

    private struct State {
        var pending: [Item] = []
        var draining: Task<Void, Never>?
    }

    private let database: DatabasePool
    private let state = NIOLockedValueBox(State())

    init(database: DatabasePool) {
        self.database = database
    }

    func enqueue(_ work: @escaping Work, done: EventLoopPromise<Void>? = nil) {
        state.withLockedValue { s in
            s.pending.append(Item(work: work, done: done))
            if s.draining == nil { s.draining = Task { await self.drain() } }
        }
    }

    /// Waits until every write queued before the call has committed or failed.
    func flush() async {
        while let task = state.withLockedValue({ $0.draining }) { await task.value }
    }

    private func drain() async {
        while true {
            let batch = state.withLockedValue { s -> [Item] in
                let b = s.pending
                s.pending.removeAll()
                if b.isEmpty { s.draining = nil }
                return b
            }
            if batch.isEmpty { return }
            do {
                try await database.write { db in for item in batch { try item.work(db) } }
                for item in batch { item.done?.succeed(()) }
            } catch {
                for item in batch { item.done?.fail(error) }
            }
        }
    }
}
