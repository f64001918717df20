import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import NIOCore
import ServiceLifecycle
import YKC

/// The admin and backend HTTP API (Hummingbird), on 127.0.0.1:8780 by default.
///
/// Health and readiness, Prometheus metrics, JSON stats, pile lookup, paging, provisioning and
/// kick. Other parts (the backend hub's WebSocket, lanes, commands, outbox) add their routes via
/// `AdminAPI.routeInstallers`. Invalid requests get a 4xx with a JSON `{"error","message"}`.
public final class AdminAPI: Sendable {
    public typealias Context = APIRequestContext
    public typealias RouteInstaller = @Sendable (Router<Context>, Gateway) -> Void

    let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    private init(port: Int, group: ServiceGroup, task: Task<Void, any Error>) {
        self.port = port
        self.group = group
        self.task = task
    }

    static func start(gateway: Gateway) async throws -> AdminAPI {
        if let refusal = APIAuthenticator.listenRefusal(config: gateway.config, tokensExist: !gateway.auth.tokens.isEmpty) {
            throw APIStartError(message: refusal)
        }
        if gateway.config.apiInsecure && !APIAuthenticator.isLoopback(gateway.config.apiHost) && !gateway.auth.enforced {
            gateway.context.logger.warning(
                "API open without authentication (apiInsecure)", metadata: ["api": "\(gateway.config.apiHost):\(gateway.config.apiPort)"])
        }
        let router = Router(context: Context.self)
        router.add(middleware: APIErrorMiddleware())
        router.add(middleware: APIAuthMiddleware(auth: gateway.auth))
        installCoreRoutes(router, gateway: gateway)
        gateway.auth.installRoutes(router)
        for install in gateway.routeInstallers { install(router, gateway) }
        var server: HTTPServerBuilder = .http1WebSocketUpgrade(
            webSocketRouter: router,
            // Backend messages are assembled frame by frame (BackendMessageAssembler); a frame
            // itself must fit the decoder whole.
            configuration: .init(ws: .init(maxFrameSize: gateway.config.hub.maxFrameBytes)))
        do {
            // TLS and mutual TLS (docs/SECURITY.md): a client without a valid certificate fails
            // the handshake when apiClientCA is set.
            if let tls = try APITLS.serverConfiguration(gateway.config) { server = try .tls(server, tlsConfiguration: tls) }
        } catch {
            throw APIStartError(message: "\(error)")
        }
        let (stream, continuation) = AsyncStream.makeStream(of: Int.self)
        var logger = gateway.context.logger
        logger.logLevel = max(logger.logLevel, .notice)
        let app = Application(
            router: router,
            server: server,
            configuration: .init(
                address: .hostname(gateway.config.apiHost, port: gateway.config.apiPort), serverName: "pilegate"),
            onServerRunning: { channel in
                continuation.yield(channel.localAddress?.port ?? 0)
                continuation.finish()
            },
            eventLoopGroupProvider: .shared(gateway.group),
            logger: logger)
        let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], cancellationSignals: [], logger: logger)
        let task = Task { try await group.run() }
        var port: Int?
        for await p in stream { port = p }
        guard let port else {
            task.cancel()
            _ = try? await task.value
            throw APIStartError(message: "the API server did not start on \(gateway.config.apiHost):\(gateway.config.apiPort)")
        }
        // A bind failure ends the group: surface it instead of hanging.
        return AdminAPI(port: port, group: group, task: task)
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }

    struct APIStartError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    // MARK: routes

    static func installCoreRoutes(_ router: Router<Context>, gateway: Gateway) {
        router.get("/healthz") { _, _ in
            json(["status": "ok", "node": gateway.config.nodeId])
        }
        router.get("/readyz") { _, _ in
            gateway.isReady
                ? json(["status": "ready"])
                : json(["status": "not_ready"], status: .serviceUnavailable)
        }
        router.get("/metrics") { _, _ in
            let text = gateway.metrics.exposition(extraGauges: gateway.stateGauges())
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("/v1/stats") { _, _ in
            try encode(gateway.statsDocument())
        }
        router.get("/v1/piles/:id") { _, context in
            let id = try pileId(context)
            let live = gateway.directory.session(for: id)
            guard let record = try await gateway.registry.record(id) ?? live.map({ placeholderRecord($0.info) }) else {
                return error(.notFound, "not_found", "pile \(id) is unknown to this gateway")
            }
            return try encode(try await PileView(record: record, session: live))
        }
        router.get("/v1/piles") { request, _ in
            let q = request.uri.queryParameters
            let limitText = q.get("limit") ?? "100"
            guard let limit = Int(limitText), (1...10_000).contains(limit) else {
                return error(.badRequest, "invalid_limit", "limit must be an integer 1...10000, got '\(limitText)'")
            }
            var online: Bool?
            if let o = q.get("online") {
                switch o.lowercased() {
                case "true", "1": online = true
                case "false", "0": online = false
                default: return error(.badRequest, "invalid_online", "online must be true or false, got '\(o)'")
                }
            }
            let after = q.get("after")
            if let after, parsePileId(after) == nil {
                return error(.badRequest, "invalid_after", "after must be a pile id (up to 14 digits), got '\(after)'")
            }
            if online == true {
                // Live sessions are authoritative for "online now".
                let page = gateway.directory.page(after: after.flatMap { parsePileId($0) }, limit: limit)
                var views: [PileView] = []
                for h in page { views.append(try await PileView(record: placeholderRecord(h.info), session: h)) }
                return try encode(PilePage(piles: views, next: page.count == limit ? page.last?.info.pileId.description : nil))
            }
            let records = try await gateway.registry.records(online: online, after: after.flatMap { parsePileId($0)?.description }, limit: limit)
            var views: [PileView] = []
            for r in records {
                let live = PileID(r.id).flatMap { gateway.directory.session(for: $0) }
                views.append(try await PileView(record: r, session: live))
            }
            return try encode(PilePage(piles: views, next: records.count == limit ? records.last?.id : nil))
        }
        PileKeyStore.installRoutes(router, gateway: gateway)
        router.delete("/v1/piles/:id/connection") { _, context in
            let id = try pileId(context)
            guard let session = gateway.directory.session(for: id) else {
                return error(.notFound, "pile_offline", "pile \(id) has no connection on this gateway")
            }
            session.close(reason: .kicked)
            gateway.context.logger.info("pile kicked", metadata: ["pile": "\(id)", "connection": "\(session.info.connectionId)"])
            return json(["kicked": id.description, "connection": String(session.info.connectionId)], status: .accepted)
        }
        router.put("/v1/piles/:id") { _, context in
            let id = try pileId(context)
            let existed = gateway.registry.isKnown(id)
            try await gateway.registry.provision(id)
            return json(["provisioned": id.description], status: existed ? .ok : .created)
        }
        router.delete("/v1/piles/:id") { _, context in
            let id = try pileId(context)
            guard try await gateway.registry.remove(id) else {
                return error(.notFound, "not_found", "pile \(id) is not in the registry")
            }
            return json(["removed": id.description])
        }
    }

    /// The one rule for pile ids in API input: 1–14 decimal digits (left-padded), or exactly 14
    /// hex digits for piles whose BCD id holds letters.
    public static func parsePileId(_ text: String) -> PileID? {
        let decimal = !text.isEmpty && text.utf8.count <= 14 && text.utf8.allSatisfy { $0 >= 48 && $0 <= 57 }
        guard decimal || text.utf8.count == 14 else { return nil }
        return PileID(text)
    }

    static func pileId(_ context: Context) throws -> PileID {
        let text = context.parameters.get("id") ?? ""
        guard let id = parsePileId(text) else { throw InvalidPileId(text: text) }
        return id
    }

    /// Turns into a 400 `{"error":"invalid_pile_id","message":…}` (see `errorMiddleware`).
    struct InvalidPileId: Error {
        var text: String
    }

    static func placeholderRecord(_ info: PileSessionInfo) -> PileRegistry.Record {
        let l = info.login
        return PileRegistry.Record(
            id: info.pileId.description, pileType: l.pileType.name, gunCount: Int(l.gunCount),
            protocolVersion: Int(l.protocolVersion), firmware: l.firmwareVersion, networkType: l.networkType.name,
            sim: l.sim.description, carrier: l.carrier.name, firstSeen: nil, lastLogin: info.loggedInAt,
            lastAddress: info.remoteAddress, online: true, offlineReason: nil, offlineAt: nil, provisioned: false,
            lane: info.lane, node: nil)
    }

    // MARK: JSON helpers

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return e
    }()

    static func encode<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try encoder.encode(value)
        return Response(
            status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func json(_ value: [String: String], status: HTTPResponse.Status = .ok) -> Response {
        (try? encode(value, status: status)) ?? Response(status: .internalServerError)
    }

    /// A 4xx/5xx with `{"error": code, "message": text}`.
    public static func error(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> Response {
        json(["error": code, "message": message], status: status)
    }
}

/// A pile as the API shows it: its registry record plus, when online here, the live session.
struct PileView: Codable, Sendable {
    struct Live: Codable, Sendable {
        var connectionId: UInt64
        var remoteAddress: String
        var lane: String
        var connectedAt: Date
        var loggedInAt: Date
        var state: PileLiveState?
    }
    var pile: PileRegistry.Record
    var session: Live?

    init(record: PileRegistry.Record, session: PileSessionHandle?) async throws {
        var r = record
        self.session = nil
        if let session {
            r.online = true
            let state = try? await session.liveState().get()
            self.session = Live(
                connectionId: session.info.connectionId, remoteAddress: session.info.remoteAddress, lane: session.info.lane,
                connectedAt: session.info.connectedAt, loggedInAt: session.info.loggedInAt, state: state)
        } else {
            r.online = false
        }
        self.pile = r
    }
}

struct PilePage: Codable, Sendable {
    var piles: [PileView]
    /// Pass as `after` to get the next page; null on the last page.
    var next: String?

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(piles, forKey: .piles)
        try c.encode(next, forKey: .next)  // explicit null on the last page
    }
}

/// Gives every API error the same body, `{"error": code, "message": text}`.
struct APIErrorMiddleware: RouterMiddleware {
    typealias Context = AdminAPI.Context
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as AdminAPI.InvalidPileId {
            return AdminAPI.error(.badRequest, "invalid_pile_id", "invalid pile id '\(e.text)': expected 1-14 decimal digits or 14 hex digits")
        } catch let e as HTTPError {
            let code = e.status.code == 413 ? "body_too_large" : e.status.code == 404 ? "not_found" : "bad_request"
            return AdminAPI.error(e.status, code, e.body ?? e.status.reasonPhrase)
        }
    }
}

/// The `/v1/stats` document.
public struct StatsDocument: Codable, Sendable {
    public var node: String
    public var counters: GatewayCounters.Snapshot
    public var process: ProcessStats
    public var sessionsByLane: [String: Int]
    public var registeredPiles: Int
    public var bannedAddresses: Int
    public var bannedPiles: Int
    public var extensions: [String: JSONValue]
}

extension Gateway {
    /// Everything `/v1/stats` and `pilegate stats` show.
    public func statsDocument() -> StatsDocument {
        var ext: [String: JSONValue] = [:]
        for (k, provider) in statsProviders { ext[k] = provider() }
        ext["auth"] = auth.statsJSON()
        return StatsDocument(
            node: config.nodeId, counters: counters.snapshot(), process: ProcessStats.current(),
            sessionsByLane: directory.countByLane(), registeredPiles: registry.knownCount,
            bannedAddresses: context.admission.bannedAddresses, bannedPiles: context.admission.bannedPiles,
            extensions: ext)
    }
}
