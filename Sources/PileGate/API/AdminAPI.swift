import Atomics
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import YKC

/// The admin and backend HTTP API (Hummingbird), on 127.0.0.1:8780 by default, as the first
/// service of the gateway's group (`Gateway.services`): it listens before the piles are
/// accepted and stops last, after the piles have drained and the long-running loops have
/// stopped, so backends get every drained pile's `pile_offline` over their WebSockets.
///
/// Health and readiness, Prometheus metrics, JSON stats, pile lookup, paging, provisioning and
/// kick. Other parts (the backend hub's WebSocket, lanes, commands, outbox) hand their routes
/// over as a `RouteCollection` (`Gateway.routes`), added here at start. Invalid requests get a
/// 4xx with a JSON `{"error","message"}`.
public struct AdminAPI: Service {
    public typealias Context = APIRequestContext
    /// Builds one feature's routes; the API adds the collection at start. (A closure because a
    /// `RouteCollection` is not `Sendable`: it is built on the task that starts the API.)
    public typealias Routes = @Sendable () -> RouteCollection<Context>

    let gateway: Gateway

    init(gateway: Gateway) {
        self.gateway = gateway
    }

    /// Binds the API (reporting its port, or why it cannot listen, to the gateway's start-up),
    /// serves until graceful shutdown, then stops within about 2 × `shutdownGrace`. Throws
    /// `APIStartError` naming the address when it cannot listen (port taken, host that does not
    /// resolve, no permission).
    public func run() async throws {
        let server: Server
        do {
            server = try await listen()
        } catch {
            gateway.startup.apiFailed(error)
            throw error
        }
        gateway.startup.apiListening(port: server.port)
        // Returns when shutdown is requested; throws when the group is cancelled.
        do {
            try await gracefulShutdown()
        } catch {
            server.task.cancel()
        }
        await server.stop(grace: gateway.config.shutdownGrace)
    }

    /// The running server: its port, the task running it, and whether that task has ended.
    private struct Server: Sendable {
        let port: Int
        let task: Task<Void, any Error>
        /// Set when the server task has ended (its value can then be awaited without blocking).
        let finished: ManagedAtomic<Bool>
        let logger: Logger

        /// Stops the server once graceful shutdown has reached it (idle connections close,
        /// requests in progress finish, WebSockets get a close frame); after `grace`, cancels
        /// whatever is left — a backend that keeps its WebSocket open without reading never
        /// answers the close handshake and would otherwise hold the process forever. Returns
        /// within about 2 × `grace`.
        func stop(grace: TimeInterval) async {
            if await waitUntilFinished(timeout: grace) { return }
            logger.warning(
                "API connections still open after the shutdown grace; closing them", metadata: ["grace_s": "\(grace)"])
            task.cancel()
            if await waitUntilFinished(timeout: grace) { return }
            logger.warning("API server did not stop after cancellation; leaving it behind", metadata: ["grace_s": "\(grace)"])
        }

        private func waitUntilFinished(timeout: TimeInterval) async -> Bool {
            let deadline = NIODeadline.now() + .nanoseconds(Int64(timeout * 1e9))
            while !finished.load(ordering: .acquiring) {
                guard NIODeadline.now() < deadline else { return false }
                try? await Task.sleep(nanoseconds: 10_000_000)
            }
            return true
        }
    }

    /// Builds the router and starts the server; returns once it listens.
    ///
    /// The server (a Hummingbird `Application`, itself a service) runs in an unstructured task
    /// created here, so it inherits this service's graceful-shutdown handler (a task-local) and
    /// stops when the group's shutdown reaches the API, yet can be left behind if it ignores
    /// cancellation (`Server.stop(grace:)`).
    private func listen() async throws -> Server {
        let gateway = self.gateway
        if let refusal = APIAuthenticator.listenRefusal(config: gateway.config, tokensExist: !gateway.auth.tokens.isEmpty) {
            throw APIStartError(message: refusal)
        }
        if gateway.config.apiInsecure && !APIAuthenticator.isLoopback(gateway.config.apiHost) && !gateway.auth.enforced {
            gateway.context.logger.warning(
                "API open without authentication (apiInsecure)", metadata: ["api": "\(gateway.config.apiHost):\(gateway.config.apiPort)"])
        }
        let config = gateway.config
        let router = Router(context: Context.self, options: .autoGenerateHeadEndpoints)
        let table = RouteTable()
        router.add(middleware: APIErrorMiddleware(routes: table))
        router.add(middleware: APIAuthMiddleware(auth: gateway.auth))
        Self.installCoreRoutes(router, gateway: gateway)
        gateway.auth.installRoutes(router)
        for build in gateway.routes { router.addRoutes(build()) }
        table.set(router.routes.map { ($0.path.description, $0.method) })
        let (stream, continuation) = AsyncStream.makeStream(of: Int.self)
        var logger = gateway.context.logger
        logger.logLevel = max(logger.logLevel, .notice)
        let address = "\(config.apiHost):\(config.apiPort)"
        let requestTimeout = TimeAmount.nanoseconds(Int64(config.apiRequestTimeout * 1e9))
        let webSocketResponder = router.buildResponder()
        // TLS and mutual TLS (docs/SECURITY.md): a client without a valid certificate fails
        // the handshake when apiClientCA is set. The context is re-read per connection, so a
        // reload (Gateway.reload) rotates the certificate without a restart.
        let credentials = gateway.apiTLS
        let server = HTTPServerBuilder { responder -> any ServerChildChannel in
            let http = APIChildChannel(
                inner: HTTP1WebSocketUpgradeChannel(
                    responder: responder, webSocketResponder: webSocketResponder,
                    // Backend messages are assembled frame by frame (BackendMessageAssembler); a
                    // frame itself must fit the decoder whole.
                    configuration: .init(
                        http1: .init(idleTimeout: requestTimeout), ws: .init(maxFrameSize: config.hub.maxFrameBytes))),
                requestTimeout: requestTimeout)
            guard let credentials else { return http }
            return APITLSChannel(inner: http, credentials: credentials)
        }
        let app = Application(
            router: router, server: server,
            configuration: .init(
                address: .hostname(config.apiHost, port: config.apiPort), serverName: "pilegate",
                availableConnectionsDelegate: APIConnectionLimit(maxConnections: config.apiMaxConnections, counts: gateway.apiConnections)),
            onServerRunning: { channel in
                continuation.yield(channel.localAddress?.port ?? 0)
                continuation.finish()
            },
            eventLoopGroupProvider: .shared(gateway.group),
            logger: logger)
        let finished = ManagedAtomic(false)
        // Not detached: it inherits this service's graceful-shutdown handler. It keeps the
        // caller's priority (under load, a server task below its callers' priority starves on
        // the cooperative pool).
        let task = Task(priority: Task.currentPriority) {
            defer {
                finished.store(true, ordering: .releasing)
                // A bind failure ends the server before it runs: end the wait below too.
                continuation.finish()
            }
            try await app.run()
        }
        var port: Int?
        for await p in stream { port = p }
        guard let port else {
            var reason = "the server stopped before it listened"
            if Task.isCancelled { task.cancel() }
            do { try await task.value } catch { reason = Self.describe(bindError: error) }
            throw APIStartError(message: "cannot listen for the API on \(address): \(reason)")
        }
        return Server(port: port, task: task, finished: finished, logger: logger)
    }

    /// A bind failure in words: NIO's errors name the system call, not the cause.
    static func describe(bindError error: any Error) -> String {
        if let e = error as? IOError {
            switch e.errnoCode {
            case EADDRINUSE: return "the address is already in use"
            case EADDRNOTAVAIL: return "the address is not available on this host"
            case EACCES: return "permission denied"
            default: return "\(e)"
            }
        }
        if error is SocketAddressError { return "the host name does not resolve" }
        return "\(error)"
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
            let reasons = gateway.notReadyReasons
            return reasons.isEmpty
                ? json(["status": "ready"])
                : json(["status": "not_ready", "reason": reasons.joined(separator: "; ")], status: .serviceUnavailable)
        }
        router.get("/metrics") { _, _ in
            let text = gateway.metrics.exposition(extraGauges: gateway.stateGauges())
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.post("/v1/config/reload") { _, _ in
            let result: ConfigurationReload
            do throws(ConfigurationReloadError) {
                result = try gateway.reloadConfiguration()
            } catch {
                if case .unavailable = error { return AdminAPI.error(.conflict, "reload_unavailable", error.description) }
                return AdminAPI.error(.unprocessableContent, "invalid_configuration", error.description)
            }
            return try encode(result)
        }
        router.get("/v1/stats") { _, _ in
            try encode(gateway.statsDocument())
        }
        router.get("/v1/piles/:id") { _, context in
            let id = try pileId(context)
            let live = gateway.directory.session(for: id)
            // Cluster mode: a pile held by another node is shown as that node sees it.
            if live == nil, let cluster = gateway.cluster, let remote = await cluster.remoteView(id) {
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: remote)))
            }
            guard let record = try await gateway.registry.record(id) ?? live.map({ placeholderRecord($0.info) }) else {
                return error(.notFound, "not_found", "pile \(id) is unknown to this gateway")
            }
            var view = try await PileView(record: record, session: live)
            view.limits = gateway.context.limits.limits(for: id)
            view.node = live != nil ? gateway.config.nodeId : nil
            return try encode(view)
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
            if let after, PileID(input: after) == nil {
                return error(.badRequest, "invalid_after", "after must be a pile id (\(PileID.inputRule)), got '\(after)'")
            }
            if online == true {
                // Live sessions are authoritative for "online now"; in cluster mode with the
                // directory's entries of the other nodes.
                let start = after.flatMap { PileID(input: $0) }
                let page = gateway.directory.page(after: start, limit: limit)
                var views: [PileView] = []
                for h in page {
                    var view = try await PileView(record: placeholderRecord(h.info), session: h)
                    view.node = gateway.config.nodeId
                    views.append(view)
                }
                if let cluster = gateway.cluster {
                    let elsewhere = cluster.directory.heldElsewhere().lazy.filter { held in start.map { held.pile > $0 } ?? true }.prefix(limit)
                    views += elsewhere.map(PileView.init(held:))
                    views.sort { $0.pile.id < $1.pile.id }
                    views = Array(views.prefix(limit))
                }
                return try encode(PilePage(piles: views, next: views.count == limit ? views.last?.pile.id : nil))
            }
            let records = try await gateway.registry.records(online: online, after: after.flatMap { PileID(input: $0)?.description }, limit: limit)
            var views: [PileView] = []
            let cluster = gateway.cluster
            for r in records {
                let id = PileID(r.id)
                let live = id.flatMap { gateway.directory.session(for: $0) }
                var view = try await PileView(record: r, session: live)
                if live != nil {
                    view.node = gateway.config.nodeId
                } else if let id, let held = cluster?.directory.holder(of: id) {
                    view.pile.online = true
                    view.node = held.entry.node
                }
                views.append(view)
            }
            return try encode(PilePage(piles: views, next: records.count == limit ? records.last?.id : nil))
        }
        PileKeyStore.installRoutes(router, gateway: gateway)
        PileLimitStore.installRoutes(router, gateway: gateway)
        AdmissionControl.installRoutes(router, gateway: gateway)
        router.delete("/v1/piles/:id/connection") { _, context in
            let id = try pileId(context)
            guard let session = gateway.directory.session(for: id) else {
                // Cluster mode: the node holding the pile kicks it.
                if let cluster = gateway.cluster, let answer = await cluster.remoteKick(id) { return answer }
                return error(.notFound, "pile_offline", "pile \(id) has no connection on this gateway")
            }
            session.close(reason: .kicked)
            gateway.context.logger.info("pile kicked", metadata: ["pile": "\(id)", "connection": "\(session.info.connectionId)"])
            return json(
                ["kicked": id.description, "connection": String(session.info.connectionId), "node": gateway.config.nodeId], status: .accepted)
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

    static func pileId(_ context: Context) throws -> PileID {
        let text = context.parameters.get("id") ?? ""
        guard let id = PileID(input: text) else { throw InvalidPileId(text: text) }
        return id
    }

    /// Turns into a 400 `{"error":"invalid_pile_id","message":…}` (see `errorMiddleware`).
    struct InvalidPileId: Error {
        var text: String
    }

    /// A request body of at most `limit` bytes, parsed as JSON. Over the limit is 413
    /// `body_too_large`, text that is not JSON a 400 `invalid_json` (both by `APIErrorMiddleware`),
    /// so each route handles only what its document means.
    static func jsonBody(_ request: Request, upTo limit: Int) async throws -> JSONValue {
        let body = try await request.body.collect(upTo: limit)
        do {
            return try JSONValue.parse(Data(body.readableBytesView))
        } catch {
            throw InvalidJSON(reason: "\(error)")
        }
    }

    /// Turns into a 400 `{"error":"invalid_json","message":…}` (see `APIErrorMiddleware`).
    struct InvalidJSON: Error {
        var reason: String
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

    /// A 4xx/5xx with `{"error": code, "message": text}` (`APIErrorBody`).
    public static func error(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> Response {
        APIErrorBody(code, message).response(status)
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
    /// The node holding the session now (nil when offline); in cluster mode possibly another node.
    var node: String?
    /// The pile's override of the per-connection limits, if it has one (`GET /v1/piles/{id}` only).
    var limits: PileLimitStore.Limits?

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

    /// A pile online on another node, from the cluster's pile directory (its live state stays
    /// there: `GET /v1/piles/{id}` asks that node).
    init(held: ClusterPileDirectory.Held) {
        let e = held.entry
        let since = Date(timeIntervalSince1970: e.since)
        pile = PileRegistry.Record(
            id: held.pile.description, pileType: nil, gunCount: nil, protocolVersion: nil, firmware: nil, networkType: nil, sim: nil,
            carrier: nil, firstSeen: nil, lastLogin: since, lastAddress: e.address, online: true, offlineReason: nil, offlineAt: nil,
            provisioned: false, lane: e.lane, node: e.node)
        session = Live(connectionId: e.connection, remoteAddress: e.address, lane: e.lane, connectedAt: since, loggedInAt: since, state: nil)
        node = e.node
    }
}

struct PilePage: Codable, Sendable {
    var piles: [PileView]
    /// Pass as `after` to get the next page; absent on the last page (API.md).
    var next: String?
}

/// Gives every API error the same body, `{"error": code, "message": text}`, and answers a
/// known path asked with a method it does not take with 405 and `Allow` instead of 404.
struct APIErrorMiddleware: RouterMiddleware {
    typealias Context = AdminAPI.Context
    let routes: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as AdminAPI.InvalidPileId {
            return AdminAPI.error(.badRequest, "invalid_pile_id", "invalid pile id '\(e.text)': expected \(PileID.inputRule)")
        } catch let e as AdminAPI.InvalidJSON {
            return AdminAPI.error(.badRequest, "invalid_json", "the body is not valid JSON: \(e.reason)")
        } catch is NIOTooManyBytesError {
            // `request.body.collect(upTo:)` over its limit; Hummingbird's own answer has no body.
            // (The error's maxBytes is what was left of the limit when it tripped, not the limit.)
            return AdminAPI.error(.contentTooLarge, "body_too_large", "the request body is too large for \(request.uri.path.prefix(128))")
        } catch let e as HTTPError {
            if e.status == .notFound {
                let allowed = routes.methods(for: request.uri.path)
                if !allowed.isEmpty && !allowed.contains(request.method) {
                    let list = allowed.map(\.rawValue).sorted().joined(separator: ", ")
                    var response = AdminAPI.error(
                        .methodNotAllowed, "method_not_allowed", "\(request.method.rawValue) is not allowed on \(request.uri.path); allowed: \(list)")
                    response.headers[.allow] = list
                    return response
                }
            }
            let code =
                switch e.status.code {
                case 413: "body_too_large"
                case 404: "not_found"
                case 426: "upgrade_required"
                default: "bad_request"
                }
            var response = AdminAPI.error(e.status, code, e.body ?? e.status.reasonPhrase)
            for field in e.headers { response.headers.append(field) }
            return response
        }
    }
}

/// The API's routes as (path pattern, method), filled once every route is installed, for the
/// 405 answer's `Allow` list.
final class RouteTable: Sendable {
    private let entries = NIOLockedValueBox<[(pattern: [Substring], method: HTTPRequest.Method)]>([])

    func set(_ routes: [(String, HTTPRequest.Method)]) {
        entries.withLockedValue { $0 = routes.map { (Self.components($0.0), $0.1) } }
    }

    /// The methods of every route whose pattern matches `path` (`{name}`, `:name` and `*` match
    /// one segment).
    func methods(for path: String) -> Set<HTTPRequest.Method> {
        let parts = Self.components(path)
        var out: Set<HTTPRequest.Method> = []
        for e in entries.withLockedValue({ $0 }) where e.pattern.count == parts.count {
            if zip(e.pattern, parts).allSatisfy({ p, s in p.hasPrefix("{") || p.hasPrefix(":") || p == "*" || p == s }) { out.insert(e.method) }
        }
        // HEAD is answered for every GET (`autoGenerateHeadEndpoints`).
        if out.contains(.get) { out.insert(.head) }
        return out
    }

    private static func components(_ path: String) -> [Substring] {
        path.split(separator: "/", omittingEmptySubsequences: true)
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
