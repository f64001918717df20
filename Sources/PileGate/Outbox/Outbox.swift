import Atomics
import Foundation
import GRDB
import Logging
import NIOConcurrencyHelpers
import NIOCore
import YKC

/// The durable outbox for must-deliver events (transaction records first of all).
///
/// A pile deletes its bill when it gets 0x40, so the gateway sends 0x40 only after the bill is
/// committed here, and delivers it to every subscribed service at least once, each service with
/// its own progress, surviving kill -9 (docs/ykc/PROTOCOL-FACTS.md §5.5, issue 5).
///
/// - Writes are group-committed by one writer task: every append waiting when a transaction
///   starts goes into it, so one fsync (`synchronous = FULL`) covers many bills under load.
/// - A bill's trade serial is unique: a re-sent bill is acknowledged again, not stored twice.
/// - Delivery: a loop hands pending events of each known service to the hub (lane routing with
///   fallback); an event leaves the outbox for that service only when an instance acks it.
///   Unacked events become eligible again after `redeliveryTimeout`.
public final class Outbox: Sendable {
    public struct Settings: Sendable {
        /// Event types that go through the outbox.
        public var events: Set<String> = [
            "transaction_record", "charging_end", "remote_start_reply", "remote_stop_reply", "remote_parallel_start_reply",
        ]
        /// Delivered events older than this are compacted away.
        public var retention: TimeInterval = 3600
        public var compactionInterval: TimeInterval = 60
        /// An event handed to an instance and not acked within this time is delivered again.
        public var redeliveryTimeout: TimeInterval = 20
        /// Events handed out per service per delivery round.
        public var deliveryBatch = 500
        public var deliveryInterval: TimeInterval = 0.05
        /// Least time between the starts of two commits while bills keep arriving. An idle
        /// outbox commits a bill at once; under load each commit waits out the rest of this
        /// window so that it carries several bills: every commit rewrites whole WAL pages (the
        /// table, its indexes, the progress table). At 5,000 bills/s: 0 → 1.7 bills per commit,
        /// 171 µs of gateway CPU per bill; 0.5 ms → 3.6 and 151 µs; 2 ms → 12 and 120 µs, with
        /// the 0x40 p50 rising by about the spacing (scripts/bench-bills.sh, docs/BENCHMARKS.md).
        public var commitSpacing: TimeInterval = 0.0005
        /// A durable service with no instance connected for this long is forgotten at the next
        /// compaction: its undelivered events stop being kept for it.
        public var serviceRetention: TimeInterval = 7 * 86_400
        /// Move an empty or unreadable `outbox.sqlite` aside and start empty (see `SQLiteStore`).
        public var freshStore = false
        public init() {}
    }

    /// What an append became.
    public enum AppendResult: Sendable, Equatable {
        case stored(seq: Int64)
        /// The same bill (trade serial) was stored before.
        case duplicate
    }

    struct Append {
        var id: String
        var event: String
        var code: Int?
        var pile: String
        var gun: Int?
        var lane: String
        var tradeSerial: String?
        var receivedAt: Double
        var payload: String
        var promise: EventLoopPromise<AppendResult>?
    }

    struct InFlight {
        var seq: Int64
        var until: Date
        /// Acked, its progress mark not committed yet: it stays busy (is not handed out again)
        /// until the commit that records it, and never expires.
        var acked = false
    }

    /// A service's delivery progress waiting for the next commit.
    struct Mark {
        var service: String
        var seq: Int64
        var id: String
    }

    let settings: Settings
    let database: DatabasePool
    let logger: Logger
    private let appends = NIOLockedValueBox<[Append]>([])
    private let progress = NIOLockedValueBox<[Mark]>([])
    /// Per service: every event with seq <= this has been acked by the service and its mark
    /// committed, so delivery scans and pending counts start above it instead of at the first
    /// row (without it each delivery round re-checks every delivered row still retained).
    /// In memory only: 0 after a restart, raised by the first delivery round. `epoch` changes
    /// whenever a floor is lowered (replay, new types), so a round that read before that does
    /// not raise the floor past events that became pending again.
    private let floors = NIOLockedValueBox<(values: [String: Int64], epoch: Int)>(([:], 0))
    private let wake: AsyncStream<Void>.Continuation
    private let wakes: AsyncStream<Void>
    /// Per service: event id → in-flight record.
    private let inFlight = NIOLockedValueBox<[String: [String: InFlight]]>([:])
    /// Known (durable) services and the event types they subscribed to ("*" = all).
    private let services = NIOLockedValueBox<[String: Set<String>]>([:])
    /// Per durable service: instances connected now, and when one was last connected (persisted
    /// in `outbox_services` at each compaction and disconnect, for `serviceRetention`).
    private let presence = NIOLockedValueBox<[String: Presence]>([:])
    /// Why a bill cannot be stored right now (the last commit failed), for `/readyz`.
    private let failure = NIOLockedValueBox<String?>(nil)

    struct Presence {
        var connected = 0
        var lastSeen: Date
    }
    private let tasks = NIOLockedValueBox<[Task<Void, Never>]>([])
    /// Set by the first `stop()`; later calls return at once.
    private let stopped = ManagedAtomic(false)
    let stats = NIOLockedValueBox(OutboxCounters())

    public struct OutboxCounters: Codable, Sendable {
        public var commits = 0
        public var eventsStored = 0
        public var duplicates = 0
        public var commitFailures = 0
        public var delivered = 0
        public var redeliveries = 0
        public var compacted = 0
        public var commitLatencySumSeconds = 0.0
        public var commitLatencyBuckets: [Int] = Array(repeating: 0, count: OutboxCounters.bounds.count + 1)
        public static let bounds: [Double] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]

        mutating func observeCommit(_ s: Double) {
            commitLatencySumSeconds += s
            commitLatencyBuckets[Self.bounds.firstIndex { s <= $0 } ?? Self.bounds.count] += 1
        }
    }

    /// Opens `directory/outbox.sqlite` (its own file, so its fsync policy is its own) and
    /// recovers: pending events are delivered again by the delivery loop. An existing file that
    /// is empty or unreadable stops start-up unless `settings.freshStore` (see `SQLiteStore`):
    /// opened as a new database it would lose every pending bill without a word.
    public init(directory: String, settings: Settings = Settings(), logger: Logger) throws {
        var config = Configuration()
        config.prepareDatabase { db in
            // FULL: the WAL is synced at every commit, so an acknowledged bill survives power loss
            // too, not only kill -9. Group commit keeps that affordable.
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        self.settings = settings
        self.logger = logger
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
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
            directory: directory, file: "outbox.sqlite", what: "outbox (pending bills)", fresh: settings.freshStore,
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
        services.withLockedValue { $0 = known }
        var presence: [String: Presence] = [:]
        for row in seen { presence[row["service"]] = Presence(lastSeen: Date(timeIntervalSince1970: row["lastSeen"])) }
        for service in known.keys where presence[service] == nil { presence[service] = Presence(lastSeen: Date()) }
        self.presence.withLockedValue { $0 = presence }
        logger.notice("outbox recovered", metadata: ["events": "\(pending)", "services": "\(known.keys.sorted())"])
    }

    /// Why a bill cannot be stored right now, or nil; `/readyz` fails while it is set.
    public var problem: String? { failure.withLockedValue { $0 } }

    public func isDurable(_ event: String) -> Bool { settings.events.contains(event) }

    /// Hands a stored event to one instance of a service; false when the service has no
    /// instance to take it now (the event waits).
    typealias Deliver = @Sendable (_ event: OutboxEvent, _ service: String) -> Bool

    /// Starts the writer, the delivery loop, compaction and the summary refresh (`OutboxService`
    /// runs it for the gateway's service group).
    func start(deliver: @escaping Deliver) {
        let writer = Task { [self] in
            var lastStart = NIODeadline.distantPast
            let spacing = TimeAmount.nanoseconds(Int64(settings.commitSpacing * 1e9))
            for await _ in wakes {
                let since = NIODeadline.now() - lastStart
                if since < spacing { try? await Task.sleep(nanoseconds: UInt64((spacing - since).nanoseconds)) }
                lastStart = .now()
                await commitPending()
            }
        }
        let delivery = Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(settings.deliveryInterval * 1e9))
                await deliverRound(deliver)
            }
        }
        let compaction = Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(settings.compactionInterval * 1e9))
                if Task.isCancelled { break }
                try? await recordPresence(now: Date())
                _ = try? await forgetAbsentServices()
                _ = try? await compact()
            }
        }
        // The summary `/metrics` and `/v1/stats` read without touching SQLite.
        let refresher = Task { [self] in
            while !Task.isCancelled {
                await refreshSummary()
                try? await Task.sleep(nanoseconds: 1_000_000_000)
            }
        }
        tasks.withLockedValue { $0 = [writer, delivery, compaction, refresher] }
    }

    /// Commits what is queued, stops the loops, records when connected services were last
    /// seen, and checkpoints the WAL into `outbox.sqlite` (which then holds everything alone).
    public func stop() async {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        // Let the writer commit what is queued before it stops.
        await commitPending()
        let running = tasks.withLockedValue { $0 }
        for t in running { t.cancel() }
        wake.finish()
        for t in running { await t.value }
        await commitPending()
        try? await recordPresence(now: Date())
        await SQLiteStore.checkpointAndClose(database, what: "outbox", logger: logger)
    }

    /// Closes the database of an outbox that was never started (a start-up that failed after
    /// opening it); a started one is closed by `stop()`.
    func close() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        try? database.close()
    }

    // MARK: writing

    /// Queues an event for the next group commit; the promise completes after the commit.
    func append(_ e: OutboxEvent, promise: EventLoopPromise<AppendResult>?) {
        let append = Append(
            id: e.id, event: e.event, code: e.code.map(Int.init), pile: e.pile.description, gun: e.gun, lane: e.lane,
            tradeSerial: e.tradeSerial?.description, receivedAt: e.receivedAt.timeIntervalSince1970, payload: String(buffer: e.payload),
            promise: promise)
        appends.withLockedValue { $0.append(append) }
        wake.yield()
    }

    /// One transaction for everything queued: appends (dedup by trade serial for bills) and
    /// delivery progress.
    func commitPending() async {
        let batch = appends.withLockedValue { a -> [Append] in
            let b = a
            a.removeAll(keepingCapacity: true)
            return b
        }
        let marks = progress.withLockedValue { p -> [Mark] in
            let b = p
            p.removeAll(keepingCapacity: true)
            return b
        }
        guard !batch.isEmpty || !marks.isEmpty else { return }
        let started = NIODeadline.now()
        do {
            let results = try await database.write { db -> [AppendResult] in
                var out: [AppendResult] = []
                out.reserveCapacity(batch.count)
                let now = Date().timeIntervalSince1970
                // Prepared once per connection and reused (GRDB's statement cache), not compiled
                // again for every row: at thousands of bills and delivery marks per second the
                // compiling was a large share of the commit's CPU.
                if !batch.isEmpty {
                    let insert = try db.cachedStatement(
                        sql: """
                            INSERT OR IGNORE INTO outbox_events (id, event, code, pile, gun, lane, tradeSerial, dedupKey, receivedAt, createdAt, payload)
                            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                            """)
                    for a in batch {
                        let dedup = a.event == "transaction_record" ? a.tradeSerial.map { "bill:" + $0 } : nil
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
            let seconds = Double((NIODeadline.now() - started).nanoseconds) / 1e9
            stats.withLockedValue { s in
                s.commits += 1
                s.observeCommit(seconds)
                for r in results {
                    if case .stored = r { s.eventsStored += 1 } else { s.duplicates += 1 }
                }
                s.delivered += marks.count
            }
            if !marks.isEmpty {
                // Recorded: the acked events may leave the in-flight set now.
                inFlight.withLockedValue { m in
                    for mark in marks where m[mark.service]?[mark.id]?.acked == true {
                        m[mark.service]?[mark.id] = nil
                    }
                }
            }
            for (a, r) in zip(batch, results) { a.promise?.succeed(r) }
            if failure.withLockedValue({ $0 }) != nil {
                failure.withLockedValue { $0 = nil }
                logger.notice("outbox commits again")
            }
        } catch {
            stats.withLockedValue { $0.commitFailures += 1 }
            if !(error is CancellationError) {
                failure.withLockedValue { $0 = "outbox.sqlite cannot commit: \(SQLiteStore.describe(error))" }
            }
            logger.error(
                "outbox commit failed: no 0x40 is sent; piles will retry",
                metadata: ["error": "\(SQLiteStore.describe(error))", "events": "\(batch.count)"])
            for a in batch { a.promise?.fail(error) }
            // Delivery marks are idempotent: keep them for the next commit.
            progress.withLockedValue { $0.insert(contentsOf: marks, at: 0) }
        }
    }

    // MARK: delivery

    /// A durable subscription: the service becomes known for the durable types it takes, from
    /// now on and across restarts, so its events wait for it while it has no instance (up to
    /// `serviceRetention`). Pair with `instanceLeft` when the instance goes.
    func serviceSubscribed(_ service: String, events: Set<String>?) {
        let types = events.map { $0.intersection(settings.events) } ?? ["*"]
        guard !types.isEmpty else { return }
        presence.withLockedValue { p in
            p[service, default: Presence(lastSeen: Date())].connected += 1
            p[service]?.lastSeen = Date()
        }
        let added = services.withLockedValue { s -> Set<String> in
            let before = s[service] ?? []
            s[service, default: []].formUnion(types)
            return types.subtracting(before)
        }
        guard !added.isEmpty else { return }
        // New types: events below the old floor may be pending for them.
        floors.withLockedValue { f in
            f.values[service] = nil
            f.epoch += 1
        }
        let database = self.database
        Task {
            try? await database.write { db in
                for t in added {
                    try db.execute(sql: "INSERT OR IGNORE INTO outbox_subscriptions (service, event) VALUES (?, ?)", arguments: [service, t])
                }
                try db.execute(
                    sql: "INSERT OR REPLACE INTO outbox_services (service, lastSeen) VALUES (?, ?)",
                    arguments: [service, Date().timeIntervalSince1970])
            }
        }
    }

    /// Whether `service` is a durable service of the outbox (its events are kept for it).
    func isDurableService(_ service: String) -> Bool {
        services.withLockedValue { $0[service] != nil }
    }

    /// An instance of a service that subscribed durably went away.
    func instanceLeft(_ service: String) {
        let now = Date()
        let left = presence.withLockedValue { p -> Bool in
            guard var e = p[service], e.connected > 0 else { return false }
            e.connected -= 1
            e.lastSeen = now
            p[service] = e
            return e.connected == 0
        }
        guard left else { return }
        let database = self.database
        Task {
            try? await database.write { db in
                try db.execute(
                    sql: "UPDATE outbox_services SET lastSeen = ? WHERE service = ?", arguments: [now.timeIntervalSince1970, service])
            }
        }
    }

    /// Sets `lastSeen = now` for every service with an instance connected, and writes every
    /// service's last sighting (a disconnect noted in memory is persisted here at the latest).
    private func recordPresence(now: Date) async throws {
        let sightings = presence.withLockedValue { p -> [(String, Double)] in
            for (k, v) in p where v.connected > 0 { p[k]?.lastSeen = now }
            return p.map { ($0.key, $0.value.lastSeen.timeIntervalSince1970) }
        }
        guard !sightings.isEmpty else { return }
        try await database.write { db in
            for (service, seen) in sightings {
                try db.execute(sql: "UPDATE outbox_services SET lastSeen = ? WHERE service = ?", arguments: [seen, service])
            }
        }
    }

    /// What `forget` did.
    public enum ForgetResult: Sendable, Equatable {
        case forgotten
        case unknown
        /// The service has instances connected now; they would make it known again at once.
        case connected(Int)
    }

    /// Forgets a durable service: its subscriptions go, so events stop being kept for it (they
    /// are compacted once the other services have them). Its past acks stay, so what it took
    /// still counts as taken. A service with an instance connected is not forgotten.
    public func forget(service: String) async throws -> ForgetResult {
        let state = presence.withLockedValue { $0[service] }
        if let state, state.connected > 0 { return .connected(state.connected) }
        let removed = try await database.write { db -> Int in
            try db.execute(sql: "DELETE FROM outbox_subscriptions WHERE service = ?", arguments: [service])
            let n = db.changesCount
            try db.execute(sql: "DELETE FROM outbox_services WHERE service = ?", arguments: [service])
            return n + db.changesCount
        }
        let known = services.withLockedValue { $0.removeValue(forKey: service) != nil }
        presence.withLockedValue { _ = $0.removeValue(forKey: service) }
        inFlight.withLockedValue { _ = $0.removeValue(forKey: service) }
        floors.withLockedValue { _ = $0.values.removeValue(forKey: service) }
        guard removed > 0 || known else { return .unknown }
        logger.notice("outbox service forgotten", metadata: ["service": "\(service)"])
        return .forgotten
    }

    /// Forgets every durable service with no instance connected for longer than
    /// `serviceRetention`; returns their names.
    @discardableResult
    public func forgetAbsentServices(now: Date = Date()) async throws -> [String] {
        let cutoff = now.addingTimeInterval(-settings.serviceRetention)
        let absent = presence.withLockedValue { p in p.filter { $0.value.connected == 0 && $0.value.lastSeen < cutoff }.map(\.key) }
        var gone: [String] = []
        for service in absent.sorted() where try await forget(service: service) == .forgotten {
            logger.warning(
                "outbox service absent longer than outboxServiceRetention: its events are no longer kept for it",
                metadata: ["service": "\(service)", "retention_s": "\(settings.serviceRetention)"])
            gone.append(service)
        }
        return gone
    }

    /// An instance of `service` acked event `id`.
    func acked(id: String, service: String) {
        // The entry stays (marked acked) until its mark is committed: until then the event is
        // still pending in SQLite, and a delivery round must not hand it out again.
        let seq = inFlight.withLockedValue { m -> Int64? in
            guard var f = m[service]?[id], !f.acked else { return nil }
            f.acked = true
            m[service]?[id] = f
            return f.seq
        }
        guard let seq else { return }
        progress.withLockedValue { $0.append(Mark(service: service, seq: seq, id: id)) }
        wake.yield()
    }

    func isInFlight(id: String, service: String) -> Bool {
        inFlight.withLockedValue { $0[service]?[id].map { !$0.acked } ?? false }
    }

    private func deliverRound(_ deliver: Deliver) async {
        let known = services.withLockedValue { $0 }
        let now = Date()
        for (service, types) in known {
            // Expired hand-outs become eligible again (the instance died or never acked).
            let busy = inFlight.withLockedValue { m -> Set<Int64> in
                var entries = m[service] ?? [:]
                let expired = entries.filter { !$0.value.acked && $0.value.until <= now }
                for k in expired.keys { entries[k] = nil }
                m[service] = entries
                if !expired.isEmpty { stats.withLockedValue { $0.redeliveries += expired.count } }
                return Set(entries.values.map(\.seq))
            }
            guard busy.count < settings.deliveryBatch else { continue }
            let rows: [DeliveryRow]
            let typeFilter = types.contains("*") ? "" : "AND e.event IN (\(types.map { _ in "?" }.joined(separator: ",")))"
            let (floor, epoch) = floors.withLockedValue { ($0.values[service] ?? 0, $0.epoch) }
            var values: [(any DatabaseValueConvertible)?] = [floor, service]
            if !types.contains("*") { values += types.sorted().map { $0 as (any DatabaseValueConvertible)? } }
            let sql = """
                SELECT e.seq, e.id, e.event, e.code, e.pile, e.gun, e.lane, e.tradeSerial, e.receivedAt, e.payload FROM outbox_events e
                WHERE e.seq > ? AND NOT EXISTS (SELECT 1 FROM outbox_progress p WHERE p.service = ? AND p.seq = e.seq) \(typeFilter)
                ORDER BY e.seq LIMIT \(settings.deliveryBatch + busy.count)
                """
            let arguments = StatementArguments(values)
            do {
                rows = try await database.read { db in
                    try Row.fetchAll(db, sql: sql, arguments: arguments).map {
                        DeliveryRow(seq: $0["seq"], event: Self.event(row: $0))
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                logger.error("outbox read failed", metadata: ["error": "\(SQLiteStore.describe(error))"])
                continue
            }
            if let first = rows.first {
                // Rows come in seq order and include in-flight ones: everything below the first
                // has been acked and recorded (seqs only grow, so no earlier row can appear).
                // A replay or subscription that lowered a floor meanwhile voids this reading.
                floors.withLockedValue { f in
                    if f.epoch == epoch { f.values[service] = max(floor, first.seq - 1) }
                }
            }
            for row in rows {
                let seq = row.seq
                guard !busy.contains(seq) else { continue }
                let id = row.event.id
                inFlight.withLockedValue {
                    $0[service, default: [:]][id] = InFlight(seq: seq, until: now.addingTimeInterval(settings.redeliveryTimeout))
                }
                if !deliver(row.event, service) {
                    // No instance of this service now: it waits.
                    inFlight.withLockedValue { _ = $0[service]?.removeValue(forKey: id) }
                    break
                }
            }
        }
    }

    struct DeliveryRow: Sendable {
        var seq: Int64
        var event: OutboxEvent
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

    // MARK: compaction and inspection

    /// Deletes events older than the retention that every service subscribed to their type has
    /// acked (and that at least one service has: an event nobody ever took is never dropped).
    @discardableResult
    public func compact(now: Date = Date()) async throws -> Int {
        let cutoff = now.timeIntervalSince1970 - settings.retention
        let removed = try await database.write { db -> Int in
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
        stats.withLockedValue { $0.compacted += removed }
        return removed
    }

    /// Pending counts per service and type, and the age of the oldest pending event per service.
    public struct Summary: Codable, Sendable {
        public var events: Int
        public var pending: [String: [String: Int]]
        public var oldestPendingAgeSeconds: [String: Double]
        public var counters: OutboxCounters
        public var services: [String: [String]]
    }

    public func summary() async throws -> Summary {
        let known = services.withLockedValue { $0 }
        let now = Date().timeIntervalSince1970
        return try await database.read { db in
            let total = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM outbox_events") ?? 0
            var pending: [String: [String: Int]] = [:]
            var oldest: [String: Double] = [:]
            let floorOf = self.floors.withLockedValue { $0.values }
            for (service, types) in known {
                let rows = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT e.event AS event, COUNT(*) AS n, MIN(e.createdAt) AS oldest FROM outbox_events e
                        WHERE e.seq > ? AND NOT EXISTS (SELECT 1 FROM outbox_progress p WHERE p.service = ? AND p.seq = e.seq)
                        GROUP BY e.event
                        """, arguments: [floorOf[service] ?? 0, service])
                var perType: [String: Int] = [:]
                var minCreated: Double?
                for r in rows {
                    let event: String = r["event"]
                    guard types.contains("*") || types.contains(event) else { continue }
                    perType[event] = r["n"]
                    let o: Double = r["oldest"]
                    minCreated = min(minCreated ?? o, o)
                }
                pending[service] = perType
                oldest[service] = minCreated.map { max(0, now - $0) } ?? 0
            }
            return Summary(
                events: total, pending: pending, oldestPendingAgeSeconds: oldest, counters: self.stats.withLockedValue { $0 },
                services: known.mapValues { Array($0).sorted() })
        }
    }

    /// A page of stored events, with whether `service` has acked each.
    public struct StoredEvent: Codable, Sendable {
        public var seq: Int64
        public var id: String
        public var event: String
        public var pile: String
        public var lane: String
        public var tradeSerial: String?
        public var createdAt: Date
        public var delivered: Bool?
        public var payload: JSONValue
    }

    public func events(service: String?, after: Int64, limit: Int) async throws -> [StoredEvent] {
        try await database.read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT e.*, (SELECT COUNT(*) FROM outbox_progress p WHERE p.service = ? AND p.seq = e.seq) AS done
                    FROM outbox_events e WHERE e.seq > ? ORDER BY e.seq LIMIT ?
                    """, arguments: [service ?? "", after, limit])
            return rows.map { r in
                StoredEvent(
                    seq: r["seq"], id: r["id"], event: r["event"], pile: r["pile"], lane: r["lane"], tradeSerial: r["tradeSerial"],
                    createdAt: Date(timeIntervalSince1970: r["createdAt"]), delivered: service == nil ? nil : (r["done"] as Int) > 0,
                    payload: (try? JSONValue.parse(r["payload"] as String)) ?? .null)
            }
        }
    }

    /// Forgets `service`'s progress for seq in `from...to`, so those events are delivered again.
    public func replay(service: String, from: Int64, to: Int64) async throws -> Int {
        let n = try await database.write { db -> Int in
            try db.execute(
                sql: "DELETE FROM outbox_progress WHERE service = ? AND seq BETWEEN ? AND ?", arguments: [service, from, to])
            return db.changesCount
        }
        floors.withLockedValue { f in
            if let floor = f.values[service], floor >= from { f.values[service] = max(0, from - 1) }
            f.epoch += 1
        }
        return n
    }

    func collectMetrics(_ w: MetricsWriter) {
        let s = stats.withLockedValue { $0 }
        w.counter("pilegate_outbox_commits_total", [], s.commits)
        w.counter("pilegate_outbox_events_stored_total", [], s.eventsStored)
        w.counter("pilegate_outbox_duplicates_total", [], s.duplicates)
        w.counter("pilegate_outbox_commit_failures_total", [], s.commitFailures)
        w.counter("pilegate_outbox_delivered_total", [], s.delivered)
        w.counter("pilegate_outbox_redeliveries_total", [], s.redeliveries)
        w.counter("pilegate_outbox_compacted_total", [], s.compacted)
        w.histogram(
            "pilegate_outbox_commit_latency_seconds", [], bounds: OutboxCounters.bounds, buckets: s.commitLatencyBuckets,
            sum: s.commitLatencySumSeconds)
        if let summary = latestSummary.withLockedValue({ $0 }) {
            w.gauge("pilegate_outbox_events", [], Double(summary.events))
            for (service, age) in summary.oldestPendingAgeSeconds {
                w.gauge("pilegate_outbox_oldest_pending_age_seconds", [("service", service)], age)
                w.gauge("pilegate_outbox_pending_events", [("service", service)], Double(summary.pending[service]?.values.reduce(0, +) ?? 0))
            }
        }
    }

    /// The summary as of the last refresh (metrics read it without touching SQLite).
    let latestSummary = NIOLockedValueBox<Summary?>(nil)

    func refreshSummary() async {
        if let s = try? await summary() { latestSummary.withLockedValue { $0 = s } }
    }
}
