import Atomics
import Foundation
import Logging
import NIOConcurrencyHelpers
import YKC

/// Commands that wait for offline piles (`deliverWithin`, docs/BACKEND-PROTOCOL.md, "Queued
/// commands"): queued durably (`QueuedCommandStore`) when the pile is not online here, sent when
/// it logs in — in queue order, one at a time, each at most once — and their results, or their
/// expiry, published to backends as durable events (`command_result`, `command_expired`).
///
/// At most once: a command is marked taken, durably, before its frame is written. A gateway that
/// stops after that and before the result is stored reports the command at its next start as
/// `outcome: "unknown"` (or with the result it had recorded) and never sends it again.
///
/// Cluster mode (docs/CLUSTER.md, "Queued commands"): the queue stays on the node that stored it,
/// and a pile that logs in on another node gets its commands from here, through the cross-node
/// command path (`Remote`), as soon as this node's directory mirror shows it online there (at
/// that moment, and by the sweep every second — so also after this node restarts).
final class QueuedCommands: Sendable {
    /// Cluster mode: where a pile online on another node is reached.
    struct Remote: Sendable {
        /// Whether another live node holds the pile (the pile directory's mirror: memory only).
        var isHeldElsewhere: @Sendable (PileID) -> Bool
        /// Runs the command on the node holding the pile and returns its outcome; nil when no
        /// other node holds it (any more).
        var send: @Sendable (_ pile: String, _ command: String, _ args: JSONValue?, _ lane: String, _ timeout: JSONValue?) async -> BackendCommands.Outcome?
    }

    /// Where a pile's next command goes: its session here, or the node holding it.
    private enum Target {
        case local(PileSessionHandle)
        case remote(Remote)
    }

    /// Hands a final event (`command_result`, `command_expired`) to the hub: event name, queued
    /// command (its id is the event id; its pile and lane route the event), the `data` object's
    /// JSON. Returns once the event is stored (true), or false when it could not be.
    typealias Publish = @Sendable (_ event: String, _ command: QueuedCommand, _ data: String) async -> Bool

    let store: QueuedCommandStore
    let commands: BackendCommands
    let limits: QueuedCommandStore.Limits
    let logger: Logger
    private let publish: Publish
    /// "node-boot-": with "q" and a counter, a queued id unique across restarts and apart from
    /// event ids (`BackendEventEnvelope`).
    private let idPrefix: String
    private let counter = ManagedAtomic<UInt64>(0)
    /// Set once the commands a previous run left have been reported.
    private let recovered = ManagedAtomic(false)
    /// Piles whose delivery task runs, and whether a login asked it to look again.
    private let delivering = NIOLockedValueBox<[PileID: Bool]>([:])
    private let remote = NIOLockedValueBox<Remote?>(nil)

    init(
        store: QueuedCommandStore, commands: BackendCommands, limits: QueuedCommandStore.Limits, logger: Logger,
        idPrefix: String, publish: @escaping Publish
    ) {
        self.store = store
        self.commands = commands
        self.limits = limits
        self.logger = logger
        self.idPrefix = idPrefix
        self.publish = publish
    }

    /// Cluster mode: lets commands reach piles online on other nodes.
    func deliverRemotely(_ remote: Remote) {
        self.remote.withLockedValue { $0 = remote }
    }

    /// Where `pile` is online: here first, else on another node (cluster mode); nil = nowhere.
    private func target(_ pile: PileID) -> Target? {
        if let session = commands.directory.session(for: pile) { return .local(session) }
        if let remote = remote.withLockedValue({ $0 }), remote.isHeldElsewhere(pile) { return .remote(remote) }
        return nil
    }

    /// The largest `args` a queued command may carry, as compact JSON (a frame's arguments are
    /// far smaller; what waits on disk for days is bounded).
    static let maxArgsBytes = 65_536

    // MARK: queueing

    /// Queues a checked command for its pile (not online here) for `deliverWithin` seconds.
    func enqueue(_ prepared: BackendCommands.Prepared, deliverWithin: TimeInterval, senderLane: String) async -> BackendCommands.Outcome {
        let args = JSONValue.object(prepared.args).description
        guard args.utf8.count <= Self.maxArgsBytes else {
            return .failure("invalid_args", "a queued command's args may be at most \(Self.maxArgsBytes) bytes of JSON, got \(args.utf8.count)")
        }
        let now = Date()
        let command = QueuedCommand(
            id: idPrefix + "q" + String(counter.wrappingIncrementThenLoad(ordering: .relaxed)), seq: 0, pile: prepared.pileId.description, command: prepared.command, args: nil, lane: senderLane,
            timeout: prepared.timeout, queuedAt: now, expiresAt: now.addingTimeInterval(deliverWithin), takenAt: nil)
        let stored: QueuedCommand
        do {
            stored = try await store.add(command, pile: prepared.pileId, args: args, limits: limits)
        } catch let refusal as QueuedCommandStore.Refusal {
            switch refusal {
            case .pileFull(let n):
                return .failure("too_many_commands", "pile \(prepared.pileId) already has \(n) queued commands (hubQueuedCommandsPerPile)")
            case .gatewayFull(let n):
                return .failure("too_many_commands", "the gateway already holds \(n) queued commands (hubQueuedCommandsTotal)")
            }
        } catch {
            logger.error("a command could not be queued", metadata: ["pile": "\(prepared.pileId)", "error": "\(SQLiteStore.describe(error))"])
            return .failure("unavailable", "the command could not be stored: \(SQLiteStore.describe(error))")
        }
        logger.info(
            "command queued for an offline pile",
            metadata: ["pile": "\(prepared.pileId)", "command": "\(prepared.command)", "id": "\(stored.id)", "deliverWithin": "\(deliverWithin)"])
        // The pile may have logged in while the command was being stored: its login found
        // nothing to send, so look again now.
        if target(prepared.pileId) != nil { pileOnline(prepared.pileId) }
        return .queued(stored)
    }

    // MARK: delivery

    /// A pile logged in (or is online with commands waiting), here or — cluster mode — on another
    /// node: sends what waits for it, on a task of its own. Cheap when nothing waits (a
    /// dictionary lookup): it runs at every login, under the session directory's lock, and at
    /// every put of the cluster's pile directory.
    func pileOnline(_ pile: PileID) {
        guard store.hasWaiting(pile) else { return }
        let start = delivering.withLockedValue { d -> Bool in
            if d[pile] != nil {
                d[pile] = true
                return false
            }
            d[pile] = false
            return true
        }
        guard start else { return }
        Task { await self.deliver(pile) }
    }

    /// Sends `pile`'s waiting commands one after another while it stays online, reporting each.
    private func deliver(_ pile: PileID) async {
        repeat {
            while let target = target(pile), let next = store.claimNext(pile) {
                guard await send(next, to: target) else { break }
            }
        } while delivering.withLockedValue({ d -> Bool in
            if d[pile] == true {
                d[pile] = false
                return true
            }
            d[pile] = nil
            return false
        })
    }

    /// Sends one claimed command (or reports it expired). Returns false when delivery to this
    /// pile should stop for now (the command then waits again).
    private func send(_ claimed: QueuedCommand, to target: Target) async -> Bool {
        let now = Date()
        if claimed.isExpired(at: now) {
            await expire(claimed)
            return true
        }
        let taken: QueuedCommand
        let argsText: String
        do {
            (taken, argsText) = try await store.take(claimed, at: now)
        } catch {
            // Not marked taken, so not sent: it waits for the sweeper's next look.
            logger.error(
                "a queued command could not be marked taken; it was not sent",
                metadata: ["id": "\(claimed.id)", "pile": "\(claimed.pile)", "error": "\(SQLiteStore.describe(error))"])
            store.release(claimed)
            return false
        }
        let outcome: BackendCommands.Outcome
        let args = try? JSONValue.parse(argsText)
        let timeout = taken.timeout.map { JSONValue.number($0) }
        switch (commands.prepare(pile: taken.pile, command: taken.command, args: args, timeout: timeout), target) {
        case (.success(let prepared), .local(let session)):
            outcome = await commands.send(prepared, to: session, senderLane: taken.lane)
        case (.success(let prepared), .remote(let remote)):
            // The holder checks and builds the frame again from the same arguments (a
            // `time_sync` without `time` then carries its clock) and answers as it would a
            // forwarded command. Nil: the pile left that node in between (not sent).
            if let answer = await remote.send(taken.pile, taken.command, .object(prepared.args), taken.lane, timeout) {
                outcome = answer
            } else if let session = commands.directory.session(for: prepared.pileId) {
                outcome = await commands.send(prepared, to: session, senderLane: taken.lane)
            } else {
                outcome = .failure("pile_offline", "pile \(prepared.pileId) went offline before the queued command was sent")
            }
        case (.failure(let refusal), _):
            outcome = .failure(refusal.code, refusal.message)
        }
        await finish(taken, outcome: outcome, sentAt: now)
        return true
    }

    /// Records and publishes a taken command's result, then forgets the command.
    private func finish(_ command: QueuedCommand, outcome: BackendCommands.Outcome, sentAt: Date) async {
        let data = Self.resultData(command, outcome: outcome, sentAt: sentAt)
        do {
            try await store.recordOutcome(command.id, data: data)
        } catch {
            logger.error("a queued command's result could not be recorded", metadata: ["id": "\(command.id)", "error": "\(SQLiteStore.describe(error))"])
        }
        await report("command_result", command, data: data)
    }

    /// Publishes a final event and, once it is stored, deletes the command. If it cannot be
    /// stored the command stays (claimed) and is reported again at the next start.
    private func report(_ event: String, _ command: QueuedCommand, data: String) async {
        guard await publish(event, command, data) else {
            logger.error("a queued command's \(event) event could not be stored; it is reported again at the next start", metadata: ["id": "\(command.id)"])
            return
        }
        do {
            try await store.remove(command)
        } catch {
            logger.error("a reported queued command could not be deleted", metadata: ["id": "\(command.id)", "error": "\(SQLiteStore.describe(error))"])
        }
    }

    private func expire(_ command: QueuedCommand) async {
        logger.info("queued command expired", metadata: ["id": "\(command.id)", "pile": "\(command.pile)", "command": "\(command.command)"])
        await report("command_expired", command, data: Self.expiredData(command))
    }

    // MARK: upkeep

    /// Reports the commands a previous run took and did not finish: with their recorded result,
    /// else `outcome: "unknown"`. Runs once (later calls return at once), before the first sweep.
    func recover() async {
        guard !recovered.exchange(true, ordering: .relaxed) else { return }
        for (command, outcome) in store.recovered {
            logger.warning(
                "a queued command was taken for sending before the last stop; its outcome is reported and it is not sent again",
                metadata: ["id": "\(command.id)", "pile": "\(command.pile)", "known": "\(outcome != nil)"])
            await report("command_result", command, data: outcome ?? Self.resultData(command, outcome: nil, sentAt: command.takenAt))
        }
    }

    /// Reports and removes expired commands, and starts delivery for online piles that have
    /// commands waiting (a login that raced a queueing, a delivery that stopped on an error, a
    /// pile already online on another node when this node started).
    func sweep(now: Date = Date()) async {
        for command in store.claimExpired(now: now) { await expire(command) }
        for pile in store.pilesWaiting() where target(pile) != nil { pileOnline(pile) }
    }

    // MARK: event data

    /// `command_result`'s data: the queued command, when it was sent, and the outcome —
    /// `replied` with the pile's `reply` as a direct command's `result` carries it, `failed`
    /// with `error` and `message`, or `unknown` (`outcome` nil: the gateway stopped in between).
    static func resultData(_ command: QueuedCommand, outcome: BackendCommands.Outcome?, sentAt: Date?) -> String {
        var w = JSONWriter()
        w.beginObject()
        w.field("id", command.id)
        w.field("command", command.command)
        switch outcome {
        case .success(let reply):
            w.field("outcome", "replied")
            w.field("ok", true)
            w.key("reply")
            w.raw(reply)
        case .failure(let code, let message):
            w.field("outcome", "failed")
            w.field("ok", false)
            APIErrorBody(code, message).writeMembers(into: &w)
        case .queued, nil:
            w.field("outcome", "unknown")
            w.field("ok", false)
            APIErrorBody(
                "unknown",
                "the gateway stopped after taking the command for sending and before the pile's reply was recorded: it may have reached the pile; it is not sent again"
            ).writeMembers(into: &w)
        }
        w.key("queuedAt")
        QueuedCommand.timestamp(command.queuedAt, into: &w)
        w.key("sentAt")
        if let sentAt { QueuedCommand.timestamp(sentAt, into: &w) } else { w.null() }
        w.endObject()
        return w.string
    }

    /// `command_expired`'s data: the queued command and when it was due.
    static func expiredData(_ command: QueuedCommand) -> String {
        var w = JSONWriter()
        w.beginObject()
        w.field("id", command.id)
        w.field("command", command.command)
        w.key("queuedAt")
        QueuedCommand.timestamp(command.queuedAt, into: &w)
        w.key("expiresAt")
        QueuedCommand.timestamp(command.expiresAt, into: &w)
        w.endObject()
        return w.string
    }
}
