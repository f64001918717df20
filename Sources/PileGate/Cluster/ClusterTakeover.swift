import Foundation
import Logging
import NATS
import NIOConcurrencyHelpers
import NIOCore
import YKC

/// One session per pile across the cluster (docs/CLUSTER.md, "One session per pile"). Before a
/// node accepts a login of a pile the directory shows on another node, it asks that node on
/// `<cluster>.node.<holder>.takeover`; the holder closes its session (`replaced_by_new_login`,
/// as a takeover on one node does), which publishes its `pile_offline`, and answers once the
/// session is gone and its `pile_offline` is acknowledged by every backend instance it went to
/// (`BackendDeliveryWatches`). Only then does the new login complete and publish `pile_online`,
/// so every backend sees the pile go offline before it comes online again, wherever its instance
/// and the two sessions are.
///
/// The wait is bounded by `wait` (no responders: at once): a holder that is dead or stuck does
/// not keep a pile from logging in; its entry is then overwritten and, should it come back, the
/// directory's watch closes its stale session (`ClusterPileDirectory`).
public final class ClusterTakeover: ClusterComponent, Sendable {
    public var name: String { "takeover" }

    /// How long a login waits for the old holder.
    let wait: Duration
    let directory: ClusterPileDirectory
    private let logger: Logger
    /// This node's sessions: the old connection of a pile logging in elsewhere is closed here.
    private let sessions: SessionDirectory
    /// Where the closed session's `pile_offline` is watched until the backends acknowledge it.
    private let deliveries: BackendDeliveryWatches
    private let counts = NIOLockedValueBox<(asked: Int, closed: Int, unanswered: Int, unacknowledged: Int)>((0, 0, 0, 0))

    init(
        directory: ClusterPileDirectory, sessions: SessionDirectory, deliveries: BackendDeliveryWatches, wait: Duration = .seconds(1),
        logger: Logger
    ) {
        self.directory = directory
        self.sessions = sessions
        self.deliveries = deliveries
        self.wait = wait
        self.logger = logger
    }

    private var node: ClusterNode { directory.node }

    // MARK: the new login's side

    /// Called on the login's event loop before it is accepted: a future to wait for when another
    /// node holds the pile, nil when nothing is to be waited for (the common case, memory only).
    func takeOver(_ pile: PileID, on eventLoop: any EventLoop) -> EventLoopFuture<Void>? {
        guard let held = directory.holder(of: pile), let client = node.client else { return nil }
        counts.withLockedValue { $0.asked += 1 }
        let promise = eventLoop.makePromise(of: Void.self)
        let subject = node.subjects.node(held.entry.node, "takeover")
        let wait = self.wait
        Task {
            do {
                _ = try await client.request(ByteBuffer(string: pile.description), to: subject, timeout: wait)
            } catch NATSError.noResponders {
            } catch {
                self.counts.withLockedValue { $0.unanswered += 1 }
                self.logger.notice(
                    "cluster: the pile's old node did not confirm the takeover; the login proceeds",
                    metadata: ["pile": "\(pile)", "node": "\(held.entry.node)", "error": "\(error)"])
            }
            promise.succeed(())
        }
        return promise.futureResult
    }

    // MARK: the old holder's side

    public func run(node: ClusterNode, client: NATSClient) async throws {
        let requests = try await client.subscribe(to: node.subjects.node(node.nodeId, "takeover"))
        await withDiscardingTaskGroup { group in
            for await request in requests { group.addTask { await self.answer(request, client) } }
        }
    }

    private func answer(_ request: NATSMessage, _ client: NATSClient) async {
        guard let pile = PileID(input: request.string),
            let session = sessions.session(for: pile)
        else {
            try? client.respond(to: request, with: ByteBuffer(string: "none"))
            return
        }
        let connection = session.info.connectionId
        logger.info(
            "cluster: pile logging in on another node; closing its session here",
            metadata: ["pile": "\(pile)", "connection": "\(connection)"])
        let delivery = deliveries.watch(pile: pile.raw, connection: connection)
        defer { deliveries.end(delivery) }
        session.close(reason: .replaced)
        // The session publishes pile_offline as it leaves the session directory; the answer
        // waits for the backends' acks of it too, within a share of the asking node's wait, so
        // the answer still reaches it in time.
        let deadline = ContinuousClock.now + answerWithin
        while sessions.session(for: pile)?.info.connectionId == connection || delivery.isWaiting, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(2))
        }
        let acknowledged = !delivery.isWaiting
        counts.withLockedValue { c in
            c.closed += 1
            if !acknowledged { c.unacknowledged += 1 }
        }
        if !acknowledged {
            logger.notice(
                "cluster: the closed session's pile_offline was not acknowledged in time; answering the takeover anyway",
                metadata: ["pile": "\(pile)", "connection": "\(connection)"])
        }
        try? client.respond(to: request, with: ByteBuffer(string: "closed"))
    }

    /// How long the old holder works on a takeover before it answers: three quarters of the
    /// asking node's `wait`, leaving the rest for the answer's way back.
    var answerWithin: Duration { wait * 3 / 4 }

    /// `/v1/stats` → `cluster.takeovers`.
    func statsJSON() -> JSONValue {
        let c = counts.withLockedValue { $0 }
        return .object([
            "asked": .number(Double(c.asked)), "closed": .number(Double(c.closed)), "unanswered": .number(Double(c.unanswered)),
            "unacknowledged": .number(Double(c.unacknowledged)),
        ])
    }
}
