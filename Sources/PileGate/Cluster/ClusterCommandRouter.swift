import Foundation
import Hummingbird
import Logging
import NATS
import NIOConcurrencyHelpers
import NIOCore
import YKC

/// Commands, pile lookups and kicks for piles on other nodes (docs/CLUSTER.md, "Commands find
/// their node"). A node that gets a command for a pile it does not hold looks the pile up in the
/// directory's mirror and sends a NATS request to `<cluster>.node.<holder>.command`; the holder
/// runs it through the same path as a local command (`BackendHub.runLocalCommand`) and answers
/// with the same result, so the caller returns the same JSON and HTTP status as the holder would.
/// A pile online nowhere fails at once with `pile_offline`, without touching NATS.
///
/// Every request is bounded: a command by its own timeout plus `margin`, a lookup or a kick by
/// `margin`. A holder that is gone answers "no responders" at once (→ `pile_offline`); one that
/// dies in the middle of a request ends it with `node_unreachable` at the bound.
public final class ClusterCommandRouter: ClusterComponent, Sendable {
    public var name: String { "command router" }

    /// What the holder adds to a command's own timeout before the caller gives up on it.
    static let margin: Double = 2
    /// The header a failure answer carries its error code in (the payload is the message).
    static let errorHeader = "Pilegate-Error"

    let directory: ClusterPileDirectory
    private let logger: Logger
    private let defaultCommandTimeout: Double
    /// This node's side: its sessions and stores (lookups and kicks), and its hub (commands).
    private let stores: GatewayStores
    private let hub: BackendHub

    /// Builds the router with the node's stores and hub (the local command path), and installs
    /// it as the hub's route for commands to piles held elsewhere. The hub is built before the
    /// router, which runs commands through it, so the hub's forwarder (and its queued commands'
    /// remote delivery) can only be set here: the one place the two are wired after creation.
    public init(
        directory: ClusterPileDirectory, stores: GatewayStores, hub: BackendHub, defaultCommandTimeout: Double, logger: Logger
    ) {
        self.directory = directory
        self.stores = stores
        self.hub = hub
        self.defaultCommandTimeout = defaultCommandTimeout
        self.logger = logger
        hub.forwardCommands { [weak self] pile, command, args, lane, timeout in
            await self?.forward(pile: pile, command: command, args: args, senderLane: lane, timeout: timeout)
        }
        // Commands queued here for a pile that logs in on another node go out through the same
        // path, as soon as the directory shows the pile there (and by the queue's sweep).
        if let queued = hub.queuedCommands {
            queued.deliverRemotely(
                .init(
                    isHeldElsewhere: { directory.holder(of: $0) != nil },
                    send: { [weak self] pile, command, args, lane, timeout in
                        await self?.forward(pile: pile, command: command, args: args, senderLane: lane, timeout: timeout)
                    }))
            directory.onPileOnlineElsewhere { [weak queued] pile in queued?.pileOnline(pile) }
        }
    }

    private var node: ClusterNode { directory.node }

    /// The node's NATS client while it is connected to the cluster.
    private var client: NATSClient? { node.client }

    // MARK: the holder's side

    public func run(node: ClusterNode, client: NATSClient) async throws {
        let commands = try await client.subscribe(to: node.subjects.node(node.nodeId, "command"))
        let views = try await client.subscribe(to: node.subjects.node(node.nodeId, "pile"))
        let kicks = try await client.subscribe(to: node.subjects.node(node.nodeId, "kick"))
        await withDiscardingTaskGroup { group in
            group.addTask {
                await withDiscardingTaskGroup { each in
                    // One task per command: each waits for its pile's reply.
                    for await request in commands { each.addTask { await self.answerCommand(request, client) } }
                }
            }
            group.addTask { for await request in views { await self.answerView(request, client) } }
            group.addTask { for await request in kicks { self.answerKick(request, client) } }
        }
    }

    struct CommandRequest: Codable, Sendable {
        var pile: String
        var command: String
        var args: JSONValue?
        var lane: String
        var timeout: JSONValue?
    }

    private func answerCommand(_ request: NATSMessage, _ client: NATSClient) async {
        let outcome: BackendCommands.Outcome
        if let r = try? JSONDecoder().decode(CommandRequest.self, from: Data(request.payload.readableBytesView)) {
            outcome = await hub.runLocalCommand(pile: r.pile, command: r.command, args: r.args, senderLane: r.lane, timeout: r.timeout)
        } else {
            outcome = .failure("invalid_args", "the forwarded command could not be read")
        }
        switch outcome {
        case .success(let reply): try? client.respond(to: request, with: ByteBuffer(string: reply))
        case .failure(let code, let message): try? client.respond(to: request, with: ByteBuffer(string: message), headers: [Self.errorHeader: code])
        // A forwarded command carries no deliverWithin, so it is never queued here.
        case .queued(let q): try? client.respond(to: request, with: ByteBuffer(string: "unexpectedly queued as \(q.id)"), headers: [Self.errorHeader: "error"])
        }
    }

    private func answerView(_ request: NATSMessage, _ client: NATSClient) async {
        guard let pile = PileID(input: request.string), let session = stores.directory.session(for: pile)
        else {
            try? client.respond(to: request, with: ByteBuffer(string: "not online here"), headers: [Self.errorHeader: "pile_offline"])
            return
        }
        let record = (try? await stores.registry.record(pile)) ?? nil
        guard var view = try? await PileView(record: record ?? AdminAPI.placeholderRecord(session.info), session: session) else { return }
        view.node = node.nodeId
        view.limits = stores.limits.limits(for: pile)
        guard let data = try? AdminAPI.encoder.encode(view) else { return }
        try? client.respond(to: request, with: ByteBuffer(bytes: data))
    }

    private func answerKick(_ request: NATSMessage, _ client: NATSClient) {
        guard let pile = PileID(input: request.string), let session = stores.directory.session(for: pile)
        else {
            try? client.respond(to: request, with: ByteBuffer(string: "not online here"), headers: [Self.errorHeader: "pile_offline"])
            return
        }
        session.close(reason: .kicked)
        logger.info(
            "pile kicked", metadata: ["pile": "\(pile)", "connection": "\(session.info.connectionId)", "by": "cluster"])
        let answer: [String: String] = ["kicked": pile.description, "connection": String(session.info.connectionId), "node": node.nodeId]
        try? client.respond(to: request, with: ByteBuffer(bytes: (try? AdminAPI.encoder.encode(answer)) ?? Data()))
    }

    // MARK: the caller's side

    /// A command for a pile held by another node, run there; nil when the pile is on this node or
    /// on no other (the local path then runs or answers `pile_offline`), or when the input is
    /// invalid (the local path names the problem).
    func forward(pile pileText: String, command: String, args: JSONValue?, senderLane: String, timeout: JSONValue?) async
        -> BackendCommands.Outcome?
    {
        guard let pile = PileID(input: pileText), let held = directory.holder(of: pile),
            stores.directory.session(for: pile) == nil,
            case .success(let seconds) = BackendCommands.timeout(timeout)
        else { return nil }
        guard let client else {
            return .failure("node_unreachable", "pile \(pile) is on node \(held.entry.node), and this node is not connected to NATS")
        }
        let body = CommandRequest(pile: pile.description, command: command, args: args, lane: senderLane, timeout: timeout)
        guard let payload = try? JSONEncoder().encode(body) else { return nil }
        let wait = (seconds ?? defaultCommandTimeout) + Self.margin
        do {
            let answer = try await client.request(
                ByteBuffer(bytes: payload), to: node.subjects.node(held.entry.node, "command"), timeout: .milliseconds(Int(wait * 1000)))
            if let code = answer.headers?[Self.errorHeader] { return .failure(code, answer.string) }
            return .success(answer.string)
        } catch {
            return failure(error, pile: pile, holder: held.entry.node, waited: wait)
        }
    }

    /// The holder's view of a pile held by another node (`GET /v1/piles/{id}` there), as JSON;
    /// nil when no other node holds it or it does not answer.
    func remoteView(_ pile: PileID) async -> Data? {
        guard let held = directory.holder(of: pile), let client else { return nil }
        guard
            let answer = try? await client.request(
                ByteBuffer(string: pile.description), to: node.subjects.node(held.entry.node, "pile"),
                timeout: .milliseconds(Int(Self.margin * 1000))),
            answer.headers?[Self.errorHeader] == nil
        else { return nil }
        return Data(answer.payload.readableBytesView)
    }

    /// Kicks a pile held by another node: the API's answer (202 with the holder's JSON, or the
    /// error); nil when no other node holds it.
    func remoteKick(_ pile: PileID) async -> Response? {
        guard let held = directory.holder(of: pile) else { return nil }
        guard let client else {
            return AdminAPI.error(
                .badGateway, "node_unreachable", "pile \(pile) is on node \(held.entry.node), and this node is not connected to NATS")
        }
        do {
            let answer = try await client.request(
                ByteBuffer(string: pile.description), to: node.subjects.node(held.entry.node, "kick"),
                timeout: .milliseconds(Int(Self.margin * 1000)))
            if let code = answer.headers?[Self.errorHeader] {
                return AdminAPI.error(BackendCommands.httpStatus(for: code), code, "pile \(pile): \(answer.string) (node \(held.entry.node))")
            }
            return Response(status: .accepted, headers: [.contentType: "application/json"], body: .init(byteBuffer: answer.payload))
        } catch {
            guard case .failure(let code, let message) = failure(error, pile: pile, holder: held.entry.node, waited: Self.margin) else {
                return nil
            }
            return AdminAPI.error(BackendCommands.httpStatus(for: code), code, message)
        }
    }

    private func failure(_ error: any Error, pile: PileID, holder: String, waited: Double) -> BackendCommands.Outcome {
        switch error {
        case NATSError.noResponders:
            // The holder's subscription is gone: it stopped or died; its entry is about to go.
            return .failure("pile_offline", "pile \(pile) was on node \(holder), which no longer answers")
        case NATSError.timeout:
            return .failure("node_unreachable", "node \(holder), holding pile \(pile), did not answer within \(waited) s")
        default:
            return .failure("node_unreachable", "cannot reach node \(holder), holding pile \(pile): \(error)")
        }
    }
}
