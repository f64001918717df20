import Foundation
import GRDB
import NIOCore
import YKC

/// The hub's side of queued commands (`QueuedCommands`): opening their store in the gateway's
/// database when the hub is built, publishing their final events through the outbox, and the
/// loop that reports what a previous run left and sweeps expired commands.
extension BackendHub {
    /// How often expired commands are looked for (and online piles with waiting commands are
    /// given another delivery).
    static let queuedCommandSweepInterval: TimeInterval = 1

    /// Opens the queued-command store in the registry's database (at the end of `init`). A store
    /// that cannot open is logged and commands with `deliverWithin` to offline piles get
    /// `unavailable`; nothing else depends on it.
    func openQueuedCommands(database: DatabasePool) -> QueuedCommands? {
        do {
            let store = try QueuedCommandStore(database: database, logger: logger)
            return QueuedCommands(
                store: store, commands: commands,
                limits: .init(perPile: config.queuedCommandsPerPile, total: config.queuedCommandsTotal), logger: logger,
                idPrefix: envelope.eventIdPrefix,
                publish: { [weak self] event, command, data in await self?.publishFinal(event, command: command, data: data) ?? false })
        } catch {
            logger.error("the queued-command store did not open; commands cannot wait for offline piles", metadata: ["error": "\(SQLiteStore.describe(error))"])
            return nil
        }
    }

    /// Publishes a queued command's final event under the command's id: stored in the outbox
    /// when the event type is durable (the default; at least once per durable service, and at
    /// most one stored event per command, as the outbox keeps ids unique), live to every other
    /// subscriber. Routed by the lane of the backend that queued it.
    func publishFinal(_ event: String, command: QueuedCommand, data: String) async -> Bool {
        guard let pile = PileID(command.pile) else { return true }
        let now = Date()
        let text = envelope.encode(
            id: command.id, event: event, code: nil, pile: pile, lane: command.lane, gun: nil, receivedAt: now, replyExpected: false
        ) { $0.raw(data) }
        let live = BackendInstance.Pending(id: command.id, text: text, event: event, pile: pile.raw, route: RouteKey(lane: command.lane, service: ""))
        guard outbox.isDurable(event) else {
            route(live, countUndeliverable: false)
            return true
        }
        let stored = group.next().makePromise(of: Outbox.AppendResult.self)
        outbox.append(
            OutboxEvent(id: command.id, event: event, code: nil, pile: pile, gun: nil, lane: command.lane, tradeSerial: nil, receivedAt: now, payload: text),
            promise: stored)
        do {
            if case .stored = try await stored.futureResult.get(), wanted.withLockedValue({ $0.contains(event) }) {
                route(live, skipService: { self.outbox.isDurableService($0) }, countUndeliverable: false)
            }
            return true
        } catch {
            return false
        }
    }

    /// Reports commands a previous run took and did not finish, then sweeps expired commands
    /// every `queuedCommandSweepInterval`, from the gateway's start until its piles have drained.
    var queuedCommandLoop: BackgroundLoop {
        BackgroundLoop(name: "queued commands") { [weak self] in
            while !Task.isCancelled {
                if let queued = self?.queuedCommands {
                    await queued.recover()
                    await queued.sweep()
                }
                try? await Task.sleep(nanoseconds: UInt64(Self.queuedCommandSweepInterval * 1e9))
            }
        }
    }
}
