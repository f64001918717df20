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
            "offline_authorization",
            // The outcome of a command that waited for an offline pile (`QueuedCommands`).
            "command_result", "command_expired",
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
        /// Cluster mode: events waiting for the relay's acknowledgement at most; the next are
        /// committed here at once and forwarded later (`clusterPublishInFlight`).
        public var relayInFlight = 1_000
        /// A durable service with no instance connected for this long is forgotten at the next
        /// compaction: its undelivered events stop being kept for it.
        public var serviceRetention: TimeInterval = 7 * 86_400
        /// Move an empty or unreadable `outbox.sqlite` aside and start empty (see `SQLiteStore`).
        public var freshStore = false
        /// Events `outbox.sqlite` may hold (delivered ones awaiting compaction included). Past it a
        /// new event is refused (`Full`): a bill gets no 0x40, so the pile keeps it and sends it
        /// again; without it a silent durable service lets piles fill the volume.
        public var maxEvents = 1_000_000
        public init() {}
    }

    /// An event refused because the outbox holds `Settings.maxEvents` events: a bill is not
    /// acknowledged (the pile keeps it and sends it again later).
    public struct Full: Error, CustomStringConvertible {
        public var maxEvents: Int
        public var description: String { "the outbox holds its maximum of \(maxEvents) events (outboxMaxEvents)" }
    }

    /// What an append became.
    public enum AppendResult: Sendable, Equatable {
        case stored(seq: Int64)
        /// The same bill (trade serial) was stored before.
        case duplicate
    }

    /// An append waiting for the next group commit.
    struct Append {
        var row: OutboxStore.Insert
        var promise: EventLoopPromise<AppendResult>?
    }

    let settings: Settings
    let store: OutboxStore
    let logger: Logger
    /// The database (tests damage it on purpose).
    var database: DatabasePool { store.database }
    private let appends = NIOLockedValueBox<[Append]>([])
    /// Delivery progress waiting for the next commit.
    private let progress = NIOLockedValueBox<[OutboxDeliveryState.Mark]>([])
    /// Services, presence, in-flight hand-outs and floors (see `OutboxDeliveryState`).
    private let state: NIOLockedValueBox<OutboxDeliveryState>
    private let wake: AsyncStream<Void>.Continuation
    private let wakes: AsyncStream<Void>
    /// Why a bill cannot be stored right now (the last commit failed), for `/readyz`.
    private let failure = NIOLockedValueBox<String?>(nil)
    private let tasks = NIOLockedValueBox<[Task<Void, Never>]>([])
    /// Set by the first `stop()`; later calls return at once.
    private let stopped = ManagedAtomic(false)
    let stats = NIOLockedValueBox(OutboxCounters())
    /// Events stored in SQLite plus those queued or being committed: what `maxEvents` bounds.
    /// Counted at open, raised by each accepted append, lowered by duplicates, failed commits and
    /// compaction, so the per-bill check is one atomic load, never a `COUNT(*)`.
    private let held: ManagedAtomic<Int>
    /// Refusals since the last warning, and when that was (warnings at most every 10 s).
    private let refusalLog = NIOLockedValueBox<(count: Int, last: Date)>((0, .distantPast))
    /// A compaction that ignores the retention runs while full (at most once a second), so
    /// delivered events kept only for inspection make room for new bills.
    private let pressureCompaction = NIOLockedValueBox<(running: Bool, last: Date)>((false, .distantPast))
    /// Cluster mode: the stream events go to first (`OutboxRelay`); nil on a node alone. Set by
    /// the assembly before the outbox starts (`relay(via:)`): the stream delivers through the hub,
    /// which is built with this outbox, so the stream exists only after it.
    private let relayBox = NIOLockedValueBox<(any OutboxRelay)?>(nil)
    /// Cluster mode: services that subscribed durably here. Their events come from the stream,
    /// so the outbox keeps nothing for them, but live copies to transient subscribers skip them.
    private let relayedServices = NIOLockedValueBox<Set<String>>([])
    /// Relay publishes under way (`stop()` waits for them: each ends in a promise).
    private let relaying = ManagedAtomic(0)
    /// The outbox's own pseudo-service in cluster mode: what it committed while the relay was
    /// unavailable is "delivered" to it by forwarding it to the relay. Not a valid backend
    /// service name (`@`), so no backend can take it over.
    static let relayService = "@cluster-stream"

    public struct OutboxCounters: Codable, Sendable {
        public var commits = 0
        public var eventsStored = 0
        public var duplicates = 0
        public var commitFailures = 0
        public var delivered = 0
        public var redeliveries = 0
        public var compacted = 0
        /// Events refused because the outbox was full (`maxEvents`), per event type.
        public var refusedFull: [String: Int] = [:]
        /// Cluster mode: events the stream stored directly (their 0x40 after the PubAck).
        public var relayed = 0
        /// Cluster mode: events the stream already had (a re-sent bill).
        public var relayDuplicates = 0
        /// Cluster mode: events committed to SQLite because the stream was unavailable or failed.
        public var relayFallbacks = 0
        /// Cluster mode: events committed to SQLite at once because `relayInFlight` events were
        /// already waiting for the stream (forwarded later, as fallbacks are).
        public var relaySpills = 0
        /// Cluster mode: events forwarded from SQLite into the stream afterwards.
        public var forwarded = 0
        public var commitLatencySumSeconds = 0.0
        public var commitLatencyBuckets: [Int] = Array(repeating: 0, count: OutboxCounters.bounds.count + 1)
        public static let bounds: [Double] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]

        mutating func observeCommit(_ s: Double) {
            commitLatencySumSeconds += s
            commitLatencyBuckets[Self.bounds.firstIndex { s <= $0 } ?? Self.bounds.count] += 1
        }
    }

    /// Opens `directory/outbox.sqlite` (`OutboxStore`) and recovers: pending events are
    /// delivered again by the delivery loop. An existing file that is empty or unreadable stops
    /// start-up unless `settings.freshStore` (see `SQLiteStore`): opened as a new database it
    /// would lose every pending bill without a word.
    public init(directory: String, settings: Settings = Settings(), logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        store = try OutboxStore(directory: directory, fresh: settings.freshStore, logger: logger)
        let recovered = store.recovered
        held = ManagedAtomic(recovered.events)
        state = NIOLockedValueBox(OutboxDeliveryState(services: recovered.services, lastSeen: recovered.lastSeen, now: Date()))
        logger.notice("outbox recovered", metadata: ["events": "\(recovered.events)", "services": "\(recovered.services.keys.sorted())"])
    }

    /// Why a bill cannot be stored right now, or nil; `/readyz` fails while it is set.
    public var problem: String? { failure.withLockedValue { $0 } }

    public func isDurable(_ event: String) -> Bool { settings.events.contains(event) }

    /// Cluster mode: must-deliver events go to `relay` first, SQLite is the fallback, and what
    /// SQLite holds is forwarded to the relay instead of delivered to local instances. Call
    /// before `start`.
    func relay(via relay: any OutboxRelay) {
        relayBox.withLockedValue { $0 = relay }
        let service = Self.relayService
        let now = Date()
        let added = state.withLockedValue { $0.subscribed(service, types: ["*"], now: now) }
        if !added.isEmpty {
            let store = self.store
            Task { try? await store.subscribe(service, types: added, now: now) }
        }
    }

    var activeRelay: (any OutboxRelay)? { relayBox.withLockedValue { $0 } }

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
        let route: Deliver = activeRelay.map { forward(to: $0) } ?? deliver
        let delivery = Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(settings.deliveryInterval * 1e9))
                await deliverRound(route)
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
        // Relay publishes under way end in a promise (a pile's 0x40) or a SQLite append: wait for
        // them (each is bounded by the relay's publish timeout) before the writer stops.
        let waitUntil = Date().addingTimeInterval(10)
        while relaying.load(ordering: .relaxed) > 0 && Date() < waitUntil { try? await Task.sleep(nanoseconds: 10_000_000) }
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        // Let the writer commit what is queued before it stops.
        await commitPending()
        let running = tasks.withLockedValue { $0 }
        for t in running { t.cancel() }
        wake.finish()
        for t in running { await t.value }
        await commitPending()
        try? await recordPresence(now: Date())
        await store.checkpointAndClose()
    }

    /// Closes the database of an outbox that was never started (a start-up that failed after
    /// opening it); a started one is closed by `stop()`.
    func close() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        store.close()
    }

    // MARK: writing

    /// Stores an event: in cluster mode in the relay's stream when it is available (the promise
    /// completes on its acknowledgement), else, or when that fails, in SQLite at the next group
    /// commit (the promise completes after the commit).
    func append(_ e: OutboxEvent, promise: EventLoopPromise<AppendResult>?) {
        guard let relay = relayBox.withLockedValue({ $0 }), relay.isAvailable else { return appendLocally(e, promise: promise) }
        guard relaying.load(ordering: .relaxed) < settings.relayInFlight else {
            stats.withLockedValue { $0.relaySpills += 1 }
            return appendLocally(e, promise: promise)
        }
        relaying.wrappingIncrement(ordering: .relaxed)
        Task { [self] in
            defer { relaying.wrappingDecrement(ordering: .relaxed) }
            do {
                let stored = try await relay.store(e)
                stats.withLockedValue { if stored { $0.relayed += 1 } else { $0.relayDuplicates += 1 } }
                promise?.succeed(stored ? .stored(seq: 0) : .duplicate)
            } catch {
                stats.withLockedValue { $0.relayFallbacks += 1 }
                appendLocally(e, promise: promise)
            }
        }
    }

    /// Queues an event for the next group commit; the promise completes after the commit.
    private func appendLocally(_ e: OutboxEvent, promise: EventLoopPromise<AppendResult>?) {
        guard !stopped.load(ordering: .relaxed) else {
            // Stopped (a relay publish that failed during shutdown): no 0x40; the pile re-sends.
            promise?.fail(CancellationError())
            return
        }
        // Checked before the row is built: a full outbox refuses a flood cheaply.
        guard held.load(ordering: .relaxed) < settings.maxEvents else { return refuse(e, promise: promise) }
        let row = OutboxStore.Insert(
            id: e.id, event: e.event, code: e.code.map(Int.init), pile: e.pile.description, gun: e.gun, lane: e.lane,
            tradeSerial: e.tradeSerial?.description, receivedAt: e.receivedAt.timeIntervalSince1970, payload: String(buffer: e.payload))
        // The bound is taken under the queue's lock, so concurrent appends cannot overshoot it.
        let queued = appends.withLockedValue { a -> Bool in
            guard held.load(ordering: .relaxed) < settings.maxEvents else { return false }
            held.wrappingIncrement(ordering: .relaxed)
            a.append(Append(row: row, promise: promise))
            return true
        }
        guard queued else { return refuse(e, promise: promise) }
        wake.yield()
    }

    /// The outbox is full: the event is not stored (a bill gets no 0x40, so the pile keeps it
    /// and re-sends it), counted, warned about at most every 10 s, and a compaction that ignores
    /// the retention is started to make room from delivered events.
    private func refuse(_ e: OutboxEvent, promise: EventLoopPromise<AppendResult>?) {
        stats.withLockedValue { $0.refusedFull[e.event, default: 0] += 1 }
        promise?.fail(Full(maxEvents: settings.maxEvents))
        let now = Date()
        let report = refusalLog.withLockedValue { r -> Int? in
            r.count += 1
            guard now.timeIntervalSince(r.last) >= 10 else { return nil }
            defer { r = (0, now) }
            return r.count
        }
        if let report {
            logger.warning(
                "outbox full (outboxMaxEvents): events are refused, bills get no 0x40 and piles will re-send them",
                metadata: ["max_events": "\(settings.maxEvents)", "refused": "\(report)", "event": "\(e.event)", "pile": "\(e.pile)"])
        }
        let start = pressureCompaction.withLockedValue { p -> Bool in
            guard !p.running, now.timeIntervalSince(p.last) >= 1 else { return false }
            p = (true, now)
            return true
        }
        guard start, !stopped.load(ordering: .relaxed) else { return }
        Task { [self] in
            _ = try? await compact(before: Date().timeIntervalSince1970)
            pressureCompaction.withLockedValue { $0.running = false }
        }
    }

    /// Whether the outbox holds `maxEvents` events (new ones are refused).
    public var isFull: Bool { held.load(ordering: .relaxed) >= settings.maxEvents }

    /// One transaction for everything queued: appends (dedup by trade serial for bills) and
    /// delivery progress.
    func commitPending() async {
        let batch = appends.withLockedValue { a -> [Append] in
            let b = a
            a.removeAll(keepingCapacity: true)
            return b
        }
        let marks = progress.withLockedValue { p -> [OutboxDeliveryState.Mark] in
            let b = p
            p.removeAll(keepingCapacity: true)
            return b
        }
        guard !batch.isEmpty || !marks.isEmpty else { return }
        let started = NIODeadline.now()
        do {
            let inserted = try await store.commit(batch.map(\.row), marks: marks)
            let duplicates = inserted.reduce(0) { n, r in if case .duplicate = r { n + 1 } else { n } }
            if duplicates > 0 { held.wrappingDecrement(by: duplicates, ordering: .relaxed) }
            let seconds = Double((NIODeadline.now() - started).nanoseconds) / 1e9
            stats.withLockedValue { s in
                s.commits += 1
                s.observeCommit(seconds)
                for r in inserted {
                    if case .stored = r { s.eventsStored += 1 } else { s.duplicates += 1 }
                }
                s.delivered += marks.count
            }
            // Recorded: the acked events may leave the in-flight set now.
            if !marks.isEmpty { state.withLockedValue { $0.recorded(marks) } }
            for (a, r) in zip(batch, inserted) {
                switch r {
                case .stored(let seq): a.promise?.succeed(.stored(seq: seq))
                case .duplicate: a.promise?.succeed(.duplicate)
                }
            }
            if failure.withLockedValue({ $0 }) != nil {
                failure.withLockedValue { $0 = nil }
                logger.notice("outbox commits again")
            }
        } catch {
            stats.withLockedValue { $0.commitFailures += 1 }
            if !batch.isEmpty { held.wrappingDecrement(by: batch.count, ordering: .relaxed) }
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
        if activeRelay != nil {
            // Cluster mode: the stream keeps its events (a durable consumer per service).
            relayedServices.withLockedValue { _ = $0.insert(service) }
            return
        }
        let now = Date()
        let added = state.withLockedValue { $0.subscribed(service, types: types, now: now) }
        guard !added.isEmpty else { return }
        let store = self.store
        Task { try? await store.subscribe(service, types: added, now: now) }
    }

    /// Whether `service` is a durable service of the outbox (its events are kept for it).
    func isDurableService(_ service: String) -> Bool {
        if activeRelay != nil { return relayedServices.withLockedValue { $0.contains(service) } }
        return state.withLockedValue { $0.isDurable(service) }
    }

    /// An instance of a service that subscribed durably went away.
    func instanceLeft(_ service: String) {
        let now = Date()
        guard state.withLockedValue({ $0.instanceLeft(service, now: now) }) else { return }
        let store = self.store
        Task { try? await store.recordLastSeen([(service, now)]) }
    }

    /// Sets `lastSeen = now` for every service with an instance connected, and writes every
    /// service's last sighting (a disconnect noted in memory is persisted here at the latest).
    private func recordPresence(now: Date) async throws {
        let sightings = state.withLockedValue { $0.sightings(now: now) }
        try await store.recordLastSeen(sightings)
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
        let connected = state.withLockedValue { $0.connected(service) }
        if connected > 0 { return .connected(connected) }
        let removed = try await store.forget(service)
        let known = state.withLockedValue { $0.forget(service) }
        guard removed > 0 || known else { return .unknown }
        logger.notice("outbox service forgotten", metadata: ["service": "\(service)"])
        return .forgotten
    }

    /// Forgets every durable service with no instance connected for longer than
    /// `serviceRetention`; returns their names.
    @discardableResult
    public func forgetAbsentServices(now: Date = Date()) async throws -> [String] {
        let absent = state.withLockedValue { $0.absent(since: now.addingTimeInterval(-settings.serviceRetention)) }
        var gone: [String] = []
        for service in absent where try await forget(service: service) == .forgotten {
            logger.warning(
                "outbox service absent longer than outboxServiceRetention: its events are no longer kept for it",
                metadata: ["service": "\(service)", "retention_s": "\(settings.serviceRetention)"])
            gone.append(service)
        }
        return gone
    }

    /// An instance of `service` acked event `id`.
    func acked(id: String, service: String) {
        activeRelay?.acked(id: id, service: service)
        // The entry stays (marked acked) until its mark is committed: until then the event is
        // still pending in SQLite, and a delivery round must not hand it out again.
        guard let mark = state.withLockedValue({ $0.acked(id: id, service: service) }) else { return }
        progress.withLockedValue { $0.append(mark) }
        wake.yield()
    }

    func isInFlight(id: String, service: String) -> Bool {
        state.withLockedValue { $0.isInFlight(id: id, service: service) }
    }

    /// Cluster mode's delivery: an event committed to SQLite goes to the relay (the stream), and
    /// counts as delivered to `relayService` on the relay's acknowledgement. False while the
    /// relay is unavailable (the event waits); a failed store hands the event back for the next
    /// round.
    private func forward(to relay: any OutboxRelay) -> Deliver {
        { [weak self] event, service in
            guard let self, relay.isAvailable else { return false }
            Task {
                do {
                    _ = try await relay.store(event)
                    self.stats.withLockedValue { $0.forwarded += 1 }
                    self.acked(id: event.id, service: service)
                } catch {
                    self.state.withLockedValue { $0.handBack(service, id: event.id) }
                }
            }
            return true
        }
    }

    private func deliverRound(_ deliver: Deliver) async {
        var known = state.withLockedValue { $0.services }
        // Cluster mode: only the forwarding to the stream; backends get events from the stream.
        if activeRelay != nil { known = known.filter { $0.key == Self.relayService } }
        let now = Date()
        for (service, types) in known {
            // Expired hand-outs become eligible again (the instance died or never acked).
            let round = state.withLockedValue { $0.beginRound(service, now: now) }
            if round.redelivered > 0 { stats.withLockedValue { $0.redeliveries += round.redelivered } }
            guard round.busy.count < settings.deliveryBatch else { continue }
            let rows: [OutboxStore.Pending]
            do {
                rows = try await store.pending(service, types: types, above: round.floor, limit: settings.deliveryBatch + round.busy.count)
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
                state.withLockedValue { $0.raiseFloor(service, below: first.seq, readAt: round) }
            }
            let until = now.addingTimeInterval(settings.redeliveryTimeout)
            for row in rows where !round.busy.contains(row.seq) {
                state.withLockedValue { $0.handOut(service, id: row.event.id, seq: row.seq, until: until) }
                if !deliver(row.event, service) {
                    // No instance of this service now: it waits.
                    state.withLockedValue { $0.handBack(service, id: row.event.id) }
                    break
                }
            }
        }
    }

    // MARK: compaction and inspection

    /// Deletes events older than the retention that every service subscribed to their type has
    /// acked (and that at least one service has: an event nobody ever took is never dropped).
    @discardableResult
    public func compact(now: Date = Date()) async throws -> Int {
        try await compact(before: now.timeIntervalSince1970 - settings.retention)
    }

    /// Deletes delivered events created before `cutoff` (see `compact(now:)`).
    private func compact(before cutoff: Double) async throws -> Int {
        let removed = try await store.compact(before: cutoff)
        if removed > 0 { held.wrappingDecrement(by: removed, ordering: .relaxed) }
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
        /// The bound on `events` (`outboxMaxEvents`), and whether it is reached (new events are refused).
        public var maxEvents: Int
        public var full: Bool
        /// Cluster mode: the stream, its consumers and the forwarding backlog (`ClusterEventStream`).
        public var stream: JSONValue?
    }

    public func summary() async throws -> Summary {
        let (known, floors) = state.withLockedValue { ($0.services, $0.floors) }
        let now = Date().timeIntervalSince1970
        let counts = try await store.pendingCounts(services: known, floors: floors)
        var oldest: [String: Double] = [:]
        for service in known.keys { oldest[service] = counts.oldestCreatedAt[service].map { max(0, now - $0) } ?? 0 }
        var stream = await activeRelay?.summary()
        if case .object(var o)? = stream {
            // What SQLite holds that has not reached the stream yet (kept during a NATS outage).
            o["forwardBacklog"] = .number(Double(counts.pending[Self.relayService]?.values.reduce(0, +) ?? 0))
            stream = .object(o)
        }
        return Summary(
            events: counts.events, pending: counts.pending, oldestPendingAgeSeconds: oldest, counters: stats.withLockedValue { $0 },
            services: known.mapValues { Array($0).sorted() }, maxEvents: settings.maxEvents, full: isFull, stream: stream)
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
        try await store.events(service: service, after: after, limit: limit)
    }

    /// Forgets `service`'s progress for seq in `from...to`, so those events are delivered again.
    public func replay(service: String, from: Int64, to: Int64) async throws -> Int {
        let n = try await store.replay(service, from: from, to: to)
        state.withLockedValue { $0.replayed(service, from: from) }
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
        w.counter("pilegate_outbox_refused_total", [("reason", "full")], s.refusedFull.values.reduce(0, +))
        w.gauge("pilegate_outbox_max_events", [], Double(settings.maxEvents))
        w.gauge("pilegate_outbox_full", [], isFull ? 1 : 0)
        if activeRelay != nil {
            w.counter("pilegate_outbox_relayed_total", [], s.relayed)
            w.counter("pilegate_outbox_relay_duplicates_total", [], s.relayDuplicates)
            w.counter("pilegate_outbox_relay_fallbacks_total", [], s.relayFallbacks)
            w.counter("pilegate_outbox_relay_spills_total", [], s.relaySpills)
            w.counter("pilegate_outbox_forwarded_total", [], s.forwarded)
        }
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
