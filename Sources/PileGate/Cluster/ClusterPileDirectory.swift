import Foundation
import Logging
import NATS
import NIOConcurrencyHelpers
import NIOCore
import YKC

/// Which node holds which pile, across the cluster (docs/CLUSTER.md, "Pile directory"): a
/// JetStream KV bucket `<cluster>_piles`, key = pile id, value = `ClusterPileEntry`, and an
/// in-memory mirror of it on every node, so a command, a lookup or a login asks memory, never
/// NATS, whether another node holds a pile.
///
/// Writes never hold up a session: a login and a logout only queue an operation (under a lock,
/// from the pile's event loop); one writer task sends them, many piles at once (a pipelined
/// JetStream publish each), one pile's operations in order. A node removes an entry only while
/// it still owns it (a delete conditional on the revision its own put got), so a late logout on
/// node A never erases node B's newer entry.
///
/// Nodes learn of each other's writes from `ClusterDirectoryChanges`: once writes have their
/// PubAcks, the node publishes them, 25 ms of them per message, and every node applies the
/// changes to its mirror by revision (`ClusterDirectoryMirror`), whatever order they arrive in. A
/// node loads the bucket whole when it starts, after a reconnect and when an origin's batches skip
/// a sequence number. While any member does not advertise `directoryChanges` (an earlier version
/// during a rolling upgrade, whose writes come only to the bucket) the node follows the bucket's
/// own watch instead, one message per write, as before.
///
/// Entries of a node that died, left or restarted count as offline for readers at once
/// (`isLive`); the cleaner — the live node with the lowest id — deletes them (conditionally, so
/// when two nodes both think they clean, one wins per entry) and, for each one it deleted, emits
/// `pile_offline` with reason `node_lost` to its backends: once per pile across the cluster. A
/// node that fell silent (rather than left or restarted) gets one more `clusterNodeTimeout`
/// before that: a saturated node's heartbeats come late, and if it comes back its piles stay.
public final class ClusterPileDirectory: ClusterComponent, Sendable {
    public var name: String { "pile directory" }

    /// A mirrored entry with its revision (the stream sequence of its put).
    public struct Held: Sendable, Equatable {
        public var pile: PileID
        public var entry: ClusterPileEntry
        public var revision: UInt64
    }

    enum Operation: Sendable {
        case online(PileSessionInfo)
        case offline(PileID, connection: UInt64)
    }

    let node: ClusterNode
    private let logger: Logger
    private let nodeTimeout: Double
    /// Piles written at once by the writer (each a JetStream publish awaiting its PubAck).
    private let writeConcurrency = 64
    private let mirror = NIOLockedValueBox(ClusterDirectoryMirror())
    /// Changes written and acknowledged, waiting for the next publish; the sequence of the last
    /// batch published (per incarnation, from 1).
    private let outgoing = NIOLockedValueBox<(changes: [ClusterDirectoryChanges.Change], sequence: UInt64)>(([], 0))
    /// How this node follows the others' writes, and what it has seen of each origin.
    private let follow = NIOLockedValueBox(Follow())
    private let restartWake: AsyncStream<Void>.Continuation
    private let restartWakes: AsyncStream<Void>
    private let flushWake: AsyncStream<Void>.Continuation
    private let flushWakes: AsyncStream<Void>
    /// How long recorded changes wait for more before they are published: in a login wave the
    /// writer's rounds are small (7 changes on average at 96,000 piles), and each message costs
    /// the server and every other node a wake-up on a saturated machine.
    static let publishDelay = Duration.milliseconds(25)
    /// This node's entries: the connection and the revision its put got.
    private let owned = NIOLockedValueBox<[PileID: (connection: UInt64, revision: UInt64)]>([:])
    private let pending = NIOLockedValueBox<[Operation]>([])
    private let wake: AsyncStream<Void>.Continuation
    private let wakes: AsyncStream<Void>
    private let sweepWake: AsyncStream<Void>.Continuation
    private let sweepWakes: AsyncStream<Void>
    /// Nodes that left with a drained shutdown: their leftover entries are removed without an event
    /// (the node sent its own `pile_offline`s while draining).
    private let departed = NIOLockedValueBox<Set<String>>([])
    /// Nodes that fell silent (`died`), with when (monotonic seconds): their entries are deleted
    /// and announced only after another `clusterNodeTimeout`, so a node that is only slow (its
    /// heartbeats late while its machine is saturated, as in a reconnect storm) and comes back
    /// keeps its piles instead of having them all announced `node_lost` and written again.
    private let silentSince = NIOLockedValueBox<[String: Double]>([:])
    private let bucketBox = NIOLockedValueBox<KeyValue?>(nil)
    private let watcherBox = NIOLockedValueBox<KeyValueWatcher?>(nil)
    /// The gateway's sessions and where `node_lost` events go, set by `attach`.
    /// This node's sessions (for resync and takeovers) and where `node_lost` events are
    /// published (the backend hub).
    private let sessions: SessionDirectory
    private let events: any GatewayEventSink
    private let failures = NIOLockedValueBox<(count: Int, last: String?)>((0, nil))
    private let cleanedCount = NIOLockedValueBox(0)
    /// Set by `ClusterCommandRouter` when it is built (`onPileOnlineElsewhere`): the router and
    /// the queued commands it wakes are built after this directory, with it.
    private let onlineElsewhere = NIOLockedValueBox<Callback<@Sendable (PileID) -> Void>?>(nil)

    public init(node: ClusterNode, nodeTimeout: Double, sessions: SessionDirectory, events: any GatewayEventSink, logger: Logger) {
        self.node = node
        self.sessions = sessions
        self.events = events
        self.nodeTimeout = nodeTimeout
        self.logger = logger
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        (sweepWakes, sweepWake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        (restartWakes, restartWake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        (flushWakes, flushWake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        node.onMembershipChange { [weak self] change in
            guard let self else { return }
            if case .left(let id) = change { self.departed.withLockedValue { _ = $0.insert(id) } }
            if case .joined(let id) = change { self.departed.withLockedValue { _ = $0.remove(id) } }
            switch change {
            case .died(let id): self.silentSince.withLockedValue { $0[id] = self.node.now }
            case .joined(let id), .restarted(let id), .left(let id): self.silentSince.withLockedValue { _ = $0.removeValue(forKey: id) }
            }
            if self.follow.withLockedValue({ $0.mode }) != self.wantedMode() { self.restartFollowing() }
            self.sweepWake.yield()
        }
    }

    /// Calls `action` whenever the watch sees a pile put online by another node (the queued
    /// commands waiting here for it go out then). Called on the watch's task: must not block.
    func onPileOnlineElsewhere(_ action: @escaping @Sendable (PileID) -> Void) {
        onlineElsewhere.withLockedValue { $0 = Callback(action) }
    }

    /// The bucket's name.
    public var bucket: String { node.subjects.resource("piles") }

    // MARK: sessions (from pile event loops: queue only)

    func sessionOnline(_ info: PileSessionInfo) {
        pending.withLockedValue { $0.append(.online(info)) }
        wake.yield()
    }

    func sessionOffline(_ info: PileSessionInfo) {
        pending.withLockedValue { $0.append(.offline(info.pileId, connection: info.connectionId)) }
        wake.yield()
    }

    // MARK: readers

    /// The live entry of `pile` on another node, if any (this node's own sessions are in the
    /// gateway's session directory).
    public func holder(of pile: PileID) -> Held? {
        guard let held = mirror.withLockedValue({ $0.held[pile] }), held.entry.node != node.nodeId else { return nil }
        return isLive(held.entry, members: memberIncarnations()) ? held : nil
    }

    /// Every live entry held by other nodes, sorted by pile id.
    public func heldElsewhere() -> [Held] {
        let members = memberIncarnations()
        let me = node.nodeId
        return mirror.withLockedValue { m in m.held.values.filter { $0.entry.node != me && isLive($0.entry, members: members) } }
            .sorted { $0.pile < $1.pile }
    }

    /// Entries in the mirror (live or not yet cleaned).
    public var count: Int { mirror.withLockedValue { $0.held.count } }

    private func memberIncarnations() -> [String: Double] {
        var out: [String: Double] = [:]
        for m in node.members { out[m.heartbeat.node] = m.heartbeat.startedAt }
        return out
    }

    /// Whether an entry stands: its node is a member in the same incarnation. In the node's first
    /// `clusterNodeTimeout` (it may not have heard every heartbeat yet) a node it has not heard of
    /// is given the benefit of the doubt unless it is known to have left.
    func isLive(_ entry: ClusterPileEntry, members: [String: Double]) -> Bool {
        if entry.node == node.nodeId { return entry.incarnation == node.startedAt }
        if let started = members[entry.node] { return started == entry.incarnation }
        if departed.withLockedValue({ $0.contains(entry.node) }) { return false }
        return Date().timeIntervalSince1970 - node.startedAt < nodeTimeout
    }

    // MARK: run

    public func run(node: ClusterNode, client: NATSClient) async throws {
        let kv = await openBucket(client)
        guard let kv else { return }
        bucketBox.withLockedValue { $0 = kv }
        await withDiscardingTaskGroup { group in
            group.addTask { await self.watch(kv, client: client) }
            group.addTask { await self.write(kv, client: client) }
            group.addTask { await self.sweep(kv, client: client) }
            group.addTask { await self.flush(client) }
        }
    }

    private func openBucket(_ client: NATSClient) async -> KeyValue? {
        var attempt = 0
        while !Task.isCancelled {
            do {
                return try await client.jetStream().createKeyValue(
                    KeyValueConfiguration(bucket: bucket, description: "pilegate: which node holds which pile", history: 1))
            } catch {
                if attempt == 0 { logger.warning("cluster: cannot open the pile directory bucket, retrying", metadata: ["error": "\(error)"]) }
            }
            try? await Task.sleep(for: client.options.reconnect.delay(attempt: attempt))
            attempt += 1
        }
        return nil
    }

    // MARK: following the other nodes' writes

    /// How the node follows the others' writes.
    enum Mode: String, Sendable {
        /// Their `ClusterDirectoryChanges` batches (every member publishes them).
        case changes
        /// The bucket's own watch, one message per write (some member is of an earlier version).
        case bucket
    }

    struct Follow: Sendable {
        /// The running way of following; nil before the first.
        var mode: Mode?
        /// Bumped to end the running way of following (the watch loop starts again, loading the bucket).
        var generation = 0
        /// While the bucket loads: the changes that arrived meanwhile, applied on top of it.
        var loading: [ClusterDirectoryChanges.Change]?
        /// The last batch sequence seen per origin incarnation.
        var origins: [String: UInt64] = [:]
        var loads = 0
        /// Loads caused by a missed or damaged batch.
        var gaps = 0
        var batchesReceived = 0
        var batchesPublished = 0
        var publishFailures = 0
    }

    /// `changes` when every member says it publishes its writes (`ClusterHeartbeat.directoryChanges`).
    func wantedMode() -> Mode {
        node.members.allSatisfy { $0.heartbeat.directoryChanges == true } ? .changes : .bucket
    }

    /// Ends the running way of following: the watch loop loads the bucket again, in the wanted mode.
    private func restartFollowing() {
        follow.withLockedValue { $0.generation += 1 }
        watcherBox.withLockedValue { $0 }?.stop()
        restartWake.yield()
    }

    /// Applies changes to the mirror (or keeps them for after the load in progress), then closes
    /// the local sessions of piles that moved and wakes the commands waiting for them.
    private func take(_ changes: [ClusterDirectoryChanges.Change]) {
        let applied: [Held] = follow.withLockedValue { f in
            if f.loading != nil {
                f.loading?.append(contentsOf: changes)
                return []
            }
            let now = node.now
            return mirror.withLockedValue { m in changes.compactMap { m.apply($0, now: now) } }
        }
        for held in applied { followed(held) }
    }

    private func followed(_ held: Held) {
        replacedElsewhere(held)
        if held.entry.node != node.nodeId { onlineElsewhere.withLockedValue { $0 }?.call(held.pile) }
    }

    /// Puts a freshly loaded bucket in place of the mirror, with what arrived during the load on top.
    private func install(_ loaded: [PileID: Held]) {
        let applied: [Held] = follow.withLockedValue { f in
            let pending = f.loading ?? []
            f.loading = nil
            let now = node.now
            return mirror.withLockedValue { m in
                m = ClusterDirectoryMirror(held: loaded)
                return pending.compactMap { m.apply($0, now: now) }
            }
        }
        for held in applied { followed(held) }
        resync()
        sweepWake.yield()
    }

    /// Keeps the mirror: the bucket loaded whole, then the others' changes, in the wanted mode.
    /// Loaded again after a reconnect (messages may have been lost meanwhile), on a gap in an
    /// origin's batches and when the wanted mode changes.
    private func watch(_ kv: KeyValue, client: NATSClient) async {
        let reconnects = Task {
            var wasDown = false
            for await status in client.statusChanges() {
                if status == .reconnecting { wasDown = true }
                if status == .connected && wasDown {
                    wasDown = false
                    self.restartFollowing()
                }
            }
        }
        defer { reconnects.cancel() }
        var attempt = 0
        while !Task.isCancelled {
            let generation = follow.withLockedValue { f -> Int in
                f.loading = []
                f.origins = [:]
                f.loads += 1
                return f.generation
            }
            do {
                switch wantedMode() {
                case .changes: try await followChanges(kv, client: client, generation: generation)
                case .bucket: try await followBucket(kv, generation: generation)
                }
            } catch where !Task.isCancelled {
                if attempt == 0 { logger.warning("cluster: pile directory watch failed, retrying", metadata: ["error": "\(error)"]) }
            } catch {}
            watcherBox.withLockedValue { $0 = nil }
            if Task.isCancelled { break }
            if follow.withLockedValue({ $0.generation }) != generation {
                attempt = 0
                continue
            }
            try? await Task.sleep(for: client.options.reconnect.delay(attempt: attempt))
            attempt += 1
        }
        watcherBox.withLockedValue { $0 }?.stop()
    }

    /// Starts the bucket's watch; stopped at once if a restart came meanwhile.
    private func startWatch(_ kv: KeyValue, generation: Int) async throws -> KeyValueWatcher {
        let watcher = try await kv.watch()
        watcherBox.withLockedValue { $0 = watcher }
        if follow.withLockedValue({ $0.generation }) != generation { watcher.stop() }
        return watcher
    }

    private static func held(_ e: KeyValueEntry, decoder: JSONDecoder) -> (PileID, Held?)? {
        guard let pile = PileID(e.key) else { return nil }
        guard e.operation == .put, let entry = ClusterPileEntry.decoded(from: e.value.readableBytesView, decoder: decoder) else {
            return (pile, nil)
        }
        return (pile, Held(pile: pile, entry: entry, revision: e.revision))
    }

    /// Every member publishes its writes: subscribe to the batches (kept aside meanwhile), load the
    /// bucket, then apply batches as they come until a restart.
    private func followChanges(_ kv: KeyValue, client: NATSClient, generation: Int) async throws {
        follow.withLockedValue { $0.mode = .changes }
        let subscription = try await client.subscribe(to: node.subjects.allDirectoryChanges) { [weak self] message in
            self?.received(message, generation: generation)
        }
        defer { subscription.unsubscribe() }
        let watcher = try await startWatch(kv, generation: generation)
        defer { watcher.stop() }
        let decoder = JSONDecoder()
        var loaded: [PileID: Held] = [:]
        var caughtUp = watcher.initialPending == 0
        if !caughtUp {
            for try await e in watcher {
                if let (pile, held) = Self.held(e, decoder: decoder) { loaded[pile] = held }
                if e.delta == 0 {
                    caughtUp = true
                    break
                }
            }
        }
        guard caughtUp, follow.withLockedValue({ $0.generation }) == generation else { return }
        watcher.stop()
        install(loaded)
        for await _ in restartWakes where follow.withLockedValue({ $0.generation }) != generation { break }
    }

    /// A batch of another node's changes, on the NATS connection's event loop.
    private func received(_ message: NATSMessage, generation: Int) {
        guard let batch = ClusterDirectoryChanges(decoding: message.payload) else {
            follow.withLockedValue { $0.gaps += 1 }
            logger.warning("cluster: a pile directory batch did not parse; loading the bucket again", metadata: ["subject": "\(message.subject)"])
            restartFollowing()
            return
        }
        // This node's own changes were applied when it wrote them.
        if batch.origin == node.nodeId && batch.incarnation == node.startedAt { return }
        let origin = "\(batch.origin)@\(batch.incarnation)"
        let gap = follow.withLockedValue { f -> Bool? in
            guard f.generation == generation else { return nil }
            f.batchesReceived += 1
            let last = f.origins.updateValue(batch.sequence, forKey: origin)
            if let last, batch.sequence != last &+ 1 {
                f.gaps += 1
                return true
            }
            return false
        }
        guard let gap else { return }
        if gap {
            logger.info("cluster: a pile directory batch was missed; loading the bucket again", metadata: ["origin": "\(batch.origin)"])
            restartFollowing()
            return
        }
        take(batch.changes)
    }

    /// Some member is of an earlier version: follow the bucket's own watch, every write of every
    /// node one message.
    private func followBucket(_ kv: KeyValue, generation: Int) async throws {
        follow.withLockedValue { $0.mode = .bucket }
        let watcher = try await startWatch(kv, generation: generation)
        let decoder = JSONDecoder()
        var loaded: [PileID: Held]? = watcher.initialPending > 0 ? [:] : nil
        if loaded == nil { install([:]) }
        for try await e in watcher {
            guard let (pile, held) = Self.held(e, decoder: decoder) else { continue }
            if loaded != nil {
                loaded?[pile] = held
                if e.delta == 0, let view = loaded {
                    loaded = nil
                    install(view)
                }
            } else {
                take([held.map { .put(pile, $0.entry, revision: $0.revision) } ?? .delete(pile, revision: e.revision)])
            }
        }
    }

    /// Another node took a pile this node still has a session for, having logged in later (the
    /// takeover request did not reach this node, e.g. both logins raced): this one is the old
    /// session and closes as replaced.
    private func replacedElsewhere(_ held: Held) {
        guard held.entry.node != node.nodeId, let local = sessions.session(for: held.pile),
            local.info.loggedInAt.timeIntervalSince1970 < held.entry.since
        else { return }
        logger.info(
            "cluster: pile logged in on another node; closing the old session here",
            metadata: ["pile": "\(held.pile)", "node": "\(held.entry.node)", "connection": "\(local.info.connectionId)"])
        local.close(reason: .replaced)
    }

    /// Queues a put for every local session the bucket does not show as this node's (written
    /// while NATS was away, or lost with the server's store), and an offline for every entry this
    /// node owns without a session.
    private func resync() {
        let me = node.nodeId
        let settled = Date().addingTimeInterval(-2)
        var ops: [Operation] = []
        let view = mirror.withLockedValue { $0.held }
        for s in sessions.all() where s.info.loggedInAt < settled {
            let e = view[s.info.pileId]?.entry
            if e?.node != me || e?.connection != s.info.connectionId || e?.incarnation != node.startedAt { ops.append(.online(s.info)) }
        }
        let settledSince = settled.timeIntervalSince1970
        for (pile, held) in view
        where held.entry.node == me && held.entry.incarnation == node.startedAt && held.entry.since < settledSince {
            guard sessions.session(for: pile)?.info.connectionId != held.entry.connection else { continue }
            // Only an entry the writer does not track (its write's answer was lost): a tracked
            // one is removed by its session's own logout, and a newer put may be in flight.
            let adopted = owned.withLockedValue { o -> Bool in
                guard o[pile] == nil else { return false }
                o[pile] = (held.entry.connection, held.revision)
                return true
            }
            if adopted { ops.append(.offline(pile, connection: held.entry.connection)) }
        }
        guard !ops.isEmpty else { return }
        pending.withLockedValue { $0.append(contentsOf: ops) }
        wake.yield()
    }

    // MARK: writer

    private func write(_ kv: KeyValue, client: NATSClient) async {
        for await _ in wakes {
            while !Task.isCancelled {
                let batch = pending.withLockedValue { p -> [Operation] in
                    defer { p.removeAll(keepingCapacity: true) }
                    return p
                }
                if batch.isEmpty { break }
                await apply(Self.byPile(batch), kv, client: client)
            }
        }
    }

    /// A write the bucket acknowledged: applied to the mirror at once, told to the other nodes
    /// with the next batch (`publishDelay` after the first change waiting, or when
    /// `changesPerBatch` are waiting).
    private func record(_ change: ClusterDirectoryChanges.Change, client: NATSClient) {
        take([change])
        let full = outgoing.withLockedValue { o -> Bool in
            o.changes.append(change)
            return o.changes.count >= Self.changesPerBatch
        }
        if full { publishChanges(client) } else { flushWake.yield() }
    }

    /// Publishes what was recorded `publishDelay` after a change started waiting.
    private func flush(_ client: NATSClient) async {
        for await _ in flushWakes {
            try? await Task.sleep(for: Self.publishDelay)
            publishChanges(client)
        }
    }

    /// Changes sent in one message at most (about 80 bytes each).
    static let changesPerBatch = 1_000

    /// Publishes the recorded changes, `ClusterDirectoryChanges.maximumBytes` per message, in
    /// order (a lock held across the publishes, which only queue bytes on the connection).
    private func publishChanges(_ client: NATSClient) {
        let subject = node.subjects.directoryChanges(node: node.nodeId)
        let (published, failed) = outgoing.withLockedValue { o -> (Int, Int) in
            var published = 0
            var failed = 0
            var start = 0
            while start < o.changes.count {
                var end = start
                var bytes = 0
                while end < o.changes.count {
                    let size = ClusterDirectoryChanges.size(of: o.changes[end])
                    if end > start && bytes + size > ClusterDirectoryChanges.maximumBytes { break }
                    bytes += size
                    end += 1
                }
                o.sequence += 1
                let batch = ClusterDirectoryChanges(
                    origin: node.nodeId, incarnation: node.startedAt, sequence: o.sequence, changes: Array(o.changes[start..<end]))
                do {
                    try client.publish(batch.encoded(), to: subject)
                    published += 1
                } catch {
                    // The others see the gap in the sequence and load the bucket.
                    failed += 1
                }
                start = end
            }
            o.changes.removeAll(keepingCapacity: true)
            return (published, failed)
        }
        guard published + failed > 0 else { return }
        follow.withLockedValue {
            $0.batchesPublished += published
            $0.publishFailures += failed
        }
    }

    /// The batch per pile, in order; a login and its own logout in the same batch cancel out, and
    /// a logout followed by a new login is the login's put alone (it overwrites the entry either
    /// way): a pile that reconnects in a storm costs one write, not a delete and a put.
    static func byPile(_ batch: [Operation]) -> [(PileID, [Operation])] {
        var order: [PileID] = []
        var ops: [PileID: [Operation]] = [:]
        for op in batch {
            let pile: PileID
            switch op {
            case .online(let info): pile = info.pileId
            case .offline(let id, _): pile = id
            }
            if ops[pile] == nil { order.append(pile) }
            if case .offline(_, let c) = op, case .online(let info)? = ops[pile]?.last, info.connectionId == c {
                ops[pile]?.removeLast()
                continue
            }
            if case .online = op, case .offline? = ops[pile]?.last { ops[pile]?.removeLast() }
            ops[pile, default: []].append(op)
        }
        return order.compactMap { p in ops[p].flatMap { $0.isEmpty ? nil : (p, $0) } }
    }

    private func apply(_ work: [(PileID, [Operation])], _ kv: KeyValue, client: NATSClient) async {
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for (pile, ops) in work {
                if running >= writeConcurrency {
                    await group.next()
                    running -= 1
                }
                running += 1
                group.addTask {
                    for op in ops { await self.apply(op, pile: pile, kv, client: client) }
                }
            }
        }
    }

    private func apply(_ op: Operation, pile: PileID, _ kv: KeyValue, client: NATSClient) async {
        let key = pile.description
        do {
            switch op {
            case .online(let info):
                let entry = ClusterPileEntry(
                    node: node.nodeId, incarnation: node.startedAt, since: info.loggedInAt.timeIntervalSince1970,
                    address: info.remoteAddress, lane: info.lane, connection: info.connectionId)
                let revision = try await kv.put(key, entry.json())
                owned.withLockedValue { $0[pile] = (info.connectionId, revision) }
                record(.put(pile, entry, revision: revision), client: client)
            case .offline(_, let connection):
                let mine = owned.withLockedValue { o -> UInt64? in
                    guard let held = o[pile], held.connection == connection else { return nil }
                    o[pile] = nil
                    return held.revision
                }
                guard let revision = mine else { return }
                if let deleted = try await deleteIfUnchanged(kv, key: key, revision: revision) {
                    record(.delete(pile, revision: deleted), client: client)
                }
            }
        } catch {
            failures.withLockedValue { f in
                if f.count == 0 || f.last != "\(error)" {
                    logger.warning("cluster: pile directory write failed (resynced later)", metadata: ["pile": "\(pile)", "error": "\(error)"])
                }
                f.count += 1
                f.last = "\(error)"
            }
        }
    }

    /// Deletes `key` only if its latest revision is still `revision`; the delete's own revision, or
    /// nil when another write came first (a newer owner).
    func deleteIfUnchanged(_ kv: KeyValue, key: String, revision: UInt64) async throws -> UInt64? {
        do {
            return try await kv.jetStream.publish(
                ByteBuffer(), to: "$KV.\(kv.bucket).\(key)", headers: ["KV-Operation": "DEL"], expectedLastSubjectSequence: revision
            ).sequence
        } catch NATSError.jetStream(let e) where e.errorCode == JetStreamAPIError.wrongLastSequence {
            return nil
        }
    }

    // MARK: cleaner

    /// Whether this node cleans up after dead nodes: the lowest id among the live members and itself.
    var isCleaner: Bool {
        let ids = node.members.map(\.heartbeat.node) + [node.nodeId]
        return ids.min() == node.nodeId
    }

    /// On every membership change and every `clusterNodeTimeout / 2`: when this node is the
    /// cleaner, deletes the entries that are not live (a silent node's once it has been silent
    /// for another `clusterNodeTimeout`) and emits `pile_offline` (`node_lost`) for each it
    /// deleted; also requeues this node's sessions the bucket lacks.
    private func sweep(_ kv: KeyValue, client: NATSClient) async {
        let period = Duration.milliseconds(max(100, Int(nodeTimeout * 500)))
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: period)
                self.sweepWake.yield()
            }
        }
        defer { ticker.cancel() }
        var ticks = 0
        for await _ in sweepWakes {
            ticks += 1
            if ticks % 4 == 0 { resync() }
            let pruneBefore = node.now - 60
            mirror.withLockedValue { $0.prune(before: pruneBefore) }
            guard isCleaner else { continue }
            let members = memberIncarnations()
            let now = node.now
            let silent = silentSince.withLockedValue { $0 }
            let dead = mirror.withLockedValue { m in
                m.held.values.filter { held in
                    guard !isLive(held.entry, members: members) else { return false }
                    // Of a node that fell silent: only once it has stayed silent a while longer.
                    if let since = silent[held.entry.node], now - since < nodeTimeout { return false }
                    return true
                }
            }
            guard !dead.isEmpty else { continue }
            let departed = self.departed.withLockedValue { $0 }
            await withTaskGroup(of: Void.self) { group in
                var running = 0
                for held in dead {
                    if running >= writeConcurrency {
                        await group.next()
                        running -= 1
                    }
                    running += 1
                    group.addTask { await self.clean(held, kv, client: client, announce: !departed.contains(held.entry.node)) }
                }
            }
            publishChanges(client)
        }
    }

    private func clean(_ held: Held, _ kv: KeyValue, client: NATSClient, announce: Bool) async {
        guard let deleted = try? await deleteIfUnchanged(kv, key: held.pile.description, revision: held.revision) else { return }
        record(.delete(held.pile, revision: deleted), client: client)
        cleanedCount.withLockedValue { $0 += 1 }
        guard announce else { return }
        events.sessionOffline(Self.sessionInfo(held), reason: .nodeLost)
    }

    /// What a `pile_offline` of a lost node's pile says about the session: what the entry holds
    /// (the login's details stayed on the lost node).
    static func sessionInfo(_ held: Held) -> PileSessionInfo {
        let e = held.entry
        let host = e.address.split(separator: ":").dropLast().joined(separator: ":")
        let login = Login(
            pileId: held.pile, pileType: PileType(rawValue: 0), gunCount: 0, protocolVersion: 0, firmwareVersion: "",
            networkType: NetworkType(rawValue: 0), sim: BCDDigits(""), carrier: Carrier(rawValue: 0))
        let since = Date(timeIntervalSince1970: e.since)
        return PileSessionInfo(
            connectionId: e.connection, pileId: held.pile, remoteAddress: e.address, remoteHost: host.isEmpty ? e.address : host,
            login: login, lane: e.lane, connectedAt: since, loggedInAt: since)
    }

    /// `/v1/stats` → `cluster.directory`.
    func statsJSON() -> JSONValue {
        let f = failures.withLockedValue { $0 }
        var o: [String: JSONValue] = [
            "bucket": .string(bucket), "entries": .number(Double(count)),
            "owned": .number(Double(owned.withLockedValue { $0.count })),
            "queued": .number(Double(pending.withLockedValue { $0.count })),
            "writeFailures": .number(Double(f.count)), "cleaned": .number(Double(cleanedCount.withLockedValue { $0 })),
        ]
        if let last = f.last { o["lastWriteFailure"] = .string(last) }
        let w = follow.withLockedValue { $0 }
        o["following"] = .string(w.mode?.rawValue ?? "starting")
        o["loads"] = .number(Double(w.loads))
        o["gaps"] = .number(Double(w.gaps))
        o["batchesPublished"] = .number(Double(w.batchesPublished))
        o["batchesReceived"] = .number(Double(w.batchesReceived))
        if w.publishFailures > 0 { o["batchPublishFailures"] = .number(Double(w.publishFailures)) }
        return .object(o)
    }
}
