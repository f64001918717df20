import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import YKC

/// A running gateway: pile listener, registry, admin/backend API, and their shutdown.
///
/// `start()` binds everything (ports may be 0 in tests; read them back from `pilePort`/`apiPort`),
/// `shutdown()` drains: stop accepting, close piles spread over the drain window, flush the
/// registry. As a `Service` it runs under swift-service-lifecycle and drains on SIGTERM/SIGINT.
public final class Gateway: Service, Sendable {
    public let context: GatewayContext
    public let group: any EventLoopGroup
    private let listenerBox = NIOLockedValueBox<PileListener?>(nil)
    private let tlsListenerBox = NIOLockedValueBox<PileListener?>(nil)
    /// The TLS pile listener's certificate (nil without `pileTLSCertificate`), re-read by `reload(to:)`.
    public let pileTLS: PileTLSCredentials?
    /// The API's TLS context (nil for plain HTTP), set when the API starts.
    let apiTLS = NIOLockedValueBox<APITLSCredentials?>(nil)
    /// Open API connections and their bound's episodes (`APIConnectionLimit`), for `/metrics`.
    let apiConnections = APIConnectionCounts()
    /// Where a reload reads the configuration from (`pilegate serve`: its file and environment).
    private let configurationSource = NIOLockedValueBox<(@Sendable () throws(ConfigurationError) -> GatewayConfiguration)?>(nil)
    private let reloadHooks = NIOLockedValueBox<[@Sendable (GatewayConfiguration) -> Void]>([])
    /// One reload at a time (SIGHUP and the API may race).
    private let reloadLock = NIOLock()
    private let apiBox = NIOLockedValueBox<AdminAPI?>(nil)
    /// The long-running loops (registry flush, token refresh, and the `services` handed in:
    /// the outbox, the hub's sweeper) in one service group, and the task running it.
    private let background = NIOLockedValueBox(Background.notStarted)

    private enum Background {
        case notStarted
        case running(ServiceGroup, Task<Void, Never>)
        /// Shut down; the registry was flushed and closed by its loop's end.
        case stopped
    }
    /// Long-running work of other components, run in the gateway's service group after its own
    /// loops (so stopped before them).
    private let services: [any Service]
    private let startedBox = NIOLockedValueBox<Bool>(false)
    public let metrics: GatewayMetrics
    /// API credentials (tokens in the registry's database, client-certificate scopes).
    public let auth: APIAuthenticator
    /// Routes other components add to the API (hub, lanes, outbox), added at start.
    public let routes: [AdminAPI.Routes]
    /// Extra sections of `/v1/stats`, by name.
    public let statsProviders: [String: @Sendable () -> JSONValue]
    /// Cluster mode: reaches piles held by other nodes (lookups, kicks), set by the assembly.
    let cluster = NIOLockedValueBox<ClusterCommandRouter?>(nil)

    public var config: GatewayConfiguration { context.config }
    public var counters: GatewayCounters { context.counters }
    public var directory: SessionDirectory { context.directory }
    public var registry: PileRegistry { context.registry }

    public init(
        config: GatewayConfiguration, sink: any GatewayEventSink = NoBackendSink(), group: (any EventLoopGroup)? = nil,
        logger: Logger = Logger(label: "pilegate"), routes: [AdminAPI.Routes] = [],
        statsProviders: [String: @Sendable () -> JSONValue] = [:], services: [any Service] = []
    ) throws {
        self.services = services
        self.routes = routes
        self.statsProviders = statsProviders
        let registry = try PileRegistry(directory: config.dataDirectory, fresh: config.freshStore, logger: logger)
        try registry.markAllOffline(reason: "gateway_restart")
        let keys = try PileKeyStore(database: registry.database, logger: logger)
        let limits = try PileLimitStore(database: registry.database, logger: logger)
        self.context = GatewayContext(
            config: config, counters: GatewayCounters(), directory: SessionDirectory(), registry: registry, keys: keys, limits: limits,
            sink: sink, logger: logger)
        self.group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: config.resolvedEventLoopThreads)
        self.metrics = GatewayMetrics(counters: context.counters)
        do {
            self.pileTLS = config.pileTLSCertificate.isEmpty ? nil : try PileTLSCredentials(config: config)
        } catch {
            throw GatewayStartError(message: error.description)
        }
        let auth = APIAuthenticator(
            tokens: try TokenStore(database: registry.database, logger: logger), certificateScopes: config.apiClientCertificateScopes,
            alwaysEnforced: APIAuthenticator.mustAlwaysEnforce(config), logger: logger)
        self.auth = auth
        metrics.addCollector { auth.collectMetrics($0) }
        let apiConnections = self.apiConnections
        metrics.addCollector { apiConnections.collectMetrics($0) }
    }

    /// The bound pile port.
    public var pilePort: Int? { listenerBox.withLockedValue { $0?.localAddress?.port } }
    /// The bound TLS pile port (nil without `pileTLSCertificate`).
    public var pileTLSPort: Int? { tlsListenerBox.withLockedValue { $0?.localAddress?.port } }
    /// The bound API port.
    public var apiPort: Int? { apiBox.withLockedValue { $0?.port } }
    public var isReady: Bool { notReadyReasons.isEmpty }

    /// Why `/readyz` answers 503: starting, shutting down, or a store that cannot commit.
    public var notReadyReasons: [String] {
        var reasons: [String] = []
        if !startedBox.withLockedValue({ $0 }) { reasons.append("starting") }
        if context.shuttingDown.load(ordering: .relaxed) { reasons.append("shutting down") }
        if let p = context.registry.problem { reasons.append(p) }
        for check in readinessChecks.withLockedValue({ $0 }) { if let p = check() { reasons.append(p) } }
        return reasons
    }

    private let readinessChecks = NIOLockedValueBox<[@Sendable () -> String?]>([])

    /// Adds a condition for readiness: `check` returns why the gateway is not ready, or nil
    /// (the outbox: its last commit failed).
    public func addReadinessCheck(_ check: @escaping @Sendable () -> String?) {
        readinessChecks.withLockedValue { $0.append(check) }
    }

    /// Binds the API and the pile listener and starts background work. Throws an error naming
    /// the address when either cannot listen; nothing is left running then.
    public func start() async throws {
        let api = try await AdminAPI.start(gateway: self)
        apiBox.withLockedValue { $0 = api }
        startBackground()
        let listener: PileListener
        do {
            listener = try await PileListener.bind(gateway: context, group: group)
        } catch {
            await stopBackground()
            await api.stop(grace: 1)
            apiBox.withLockedValue { $0 = nil }
            throw GatewayStartError(
                message: "cannot listen for piles on \(config.pileHost):\(config.pilePort): \(AdminAPI.describe(bindError: error))")
        }
        listenerBox.withLockedValue { $0 = listener }
        if let pileTLS {
            do {
                let tlsListener = try await PileListener.bind(gateway: context, group: group, tls: pileTLS)
                tlsListenerBox.withLockedValue { $0 = tlsListener }
            } catch {
                await stopBackground()
                await listener.stopAccepting()
                await api.stop(grace: 1)
                apiBox.withLockedValue { $0 = nil }
                throw GatewayStartError(
                    message: "cannot listen for TLS piles on \(config.pileHost):\(config.pileTLSPort): \(AdminAPI.describe(bindError: error))")
            }
        }
        let files = FileLimit.read(reserve: config.fileDescriptorReserve)
        context.admission.fileLimitCap.store(files.pileConnections, ordering: .relaxed)
        if files.pileConnections < config.maxConnections {
            context.logger.notice(
                "pile connections capped by the file limit",
                metadata: [
                    "file_limit": "\(files.limit)", "open": "\(files.open)", "reserve": "\(files.reserve)",
                    "pile_connections": "\(files.pileConnections)",
                ])
        }
        startedBox.withLockedValue { $0 = true }
        context.logger.notice(
            "pilegate started",
            metadata: [
                "node": "\(context.config.nodeId)",
                "piles": "\(context.config.pileHost):\(pilePort ?? context.config.pilePort)",
                "piles_tls": "\(pileTLSPort.map { "\(context.config.pileHost):\($0)" } ?? "off")",
                "api": "\(context.config.apiHost):\(apiPort ?? context.config.apiPort)",
                "data": "\(context.config.dataDirectory)", "login_policy": "\(context.config.loginPolicy.rawValue)",
            ])
    }

    /// Graceful shutdown, in the reverse order of start: `/readyz` turns 503 and the listener
    /// stops accepting; pile connections close spread over the drain window while the API and
    /// the backend hub stay up, so backends get every drained pile's `pile_offline`; then the
    /// service group of the long-running loops shuts down in reverse order (the hub's sweeper,
    /// the outbox's last commit, the token refresh, the registry's final flush); the API closes
    /// last. Bounded whatever clients do:
    /// drain window + `shutdownGrace` for piles that do not close + about 2 × `shutdownGrace`
    /// for API connections (a backend that stops reading is cut off).
    public func shutdown() async {
        guard !context.shuttingDown.exchange(true, ordering: .relaxed) else { return }
        let listener = listenerBox.withLockedValue { $0 }
        let tlsListener = tlsListenerBox.withLockedValue { $0 }
        await listener?.stopAccepting()
        await tlsListener?.stopAccepting()
        let sessions = context.directory.all()
        let window = context.config.drainWindow
        context.logger.notice("draining pile connections", metadata: ["sessions": "\(sessions.count)", "window_s": "\(window)"])
        if !sessions.isEmpty {
            // Close in small batches spread evenly over the window.
            let batches = max(1, min(sessions.count, Int(window * 20)))
            let perBatch = (sessions.count + batches - 1) / batches
            let pause = window / Double(batches)
            var index = 0
            while index < sessions.count {
                for s in sessions[index..<min(index + perBatch, sessions.count)] { s.close(reason: .shutdown) }
                index += perBatch
                if index < sessions.count && pause > 0 { try? await Task.sleep(nanoseconds: UInt64(pause * 1e9)) }
            }
        }
        // Connections that never logged in are closed too: every connection is in its event
        // loop's liveness sweeper from activation on, and the sweepers close them all.
        context.liveness.closeAll(reason: .shutdown)
        await waitForConnections(timeout: context.config.shutdownGrace)
        // The loops stop in reverse order: the hub's sweeper, the outbox (its last commit), the
        // token refresh, and the registry (its final flush, then it closes).
        await stopBackground()
        let api = apiBox.withLockedValue { $0 }
        await api?.stop(grace: context.config.shutdownGrace)
        context.logger.notice("pilegate stopped")
    }

    /// Starts the service group of the long-running loops. It runs in a detached task: a task
    /// created here would inherit the graceful-shutdown handler of the group running the
    /// gateway (a task-local) and stop the outbox at the start of the drain, before the drained
    /// piles' bills are committed; `shutdown()` stops it once the piles have drained.
    private func startBackground() {
        let registry = context.registry
        let interval = context.config.registryFlushInterval
        let tokens = auth.tokens
        let loops: [any Service] = [
            BackgroundLoop(
                name: "registry flush", loop: { await registry.runFlushLoop(interval: interval) },
                // After the loop has ended (a write it had started, or put back after its
                // cancellation, is in `pending`): the final flush, then the database closes.
                finish: {
                    _ = try? await registry.flush()
                    await registry.close()
                }),
            BackgroundLoop(name: "token refresh", loop: { await tokens.runRefreshLoop() }),
        ]
        let group = ServiceGroup(
            services: loops + services, gracefulShutdownSignals: [], cancellationSignals: [], logger: context.logger)
        let logger = context.logger
        let task = Task.detached {
            do { try await group.run() } catch {
                logger.error("background services ended", metadata: ["error": "\(error)"])
            }
        }
        background.withLockedValue { $0 = .running(group, task) }
    }

    /// Shuts the loops' service group down (in reverse order) and waits for it; when it never
    /// ran, flushes and closes the registry itself.
    private func stopBackground() async {
        let state = background.withLockedValue { b in
            defer { b = .stopped }
            return b
        }
        switch state {
        case .running(let group, let task):
            await group.triggerGracefulShutdown()
            await task.value
        case .notStarted:
            _ = try? await context.registry.flush()
            await context.registry.close()
        case .stopped:
            break
        }
    }

    private func waitForConnections(timeout: TimeInterval) async {
        let deadline = Date().addingTimeInterval(timeout)
        while context.counters.connections.load(ordering: .relaxed) > 0 && Date() < deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// Sets where `reloadConfiguration()` reads the configuration from: `pilegate serve` passes
    /// its `--config` file with the environment on top, as at start-up.
    public func setConfigurationSource(_ source: @escaping @Sendable () throws(ConfigurationError) -> GatewayConfiguration) {
        configurationSource.withLockedValue { $0 = source }
    }

    /// Work to do with each configuration a reload puts in force (serve: the log level).
    public func onReload(_ hook: @escaping @Sendable (GatewayConfiguration) -> Void) {
        reloadHooks.withLockedValue { $0.append(hook) }
    }

    /// SIGHUP and `POST /v1/config/reload`: reads the configuration source again and applies it
    /// with `reload(to:)`.
    public func reloadConfiguration() throws(ConfigurationReloadError) -> ConfigurationReload {
        guard let source = configurationSource.withLockedValue({ $0 }) else { throw .unavailable }
        let loaded: GatewayConfiguration
        do { loaded = try source() } catch {
            context.logger.error("configuration not reloaded, the running one stays", metadata: ["reason": "\(error)"])
            throw .invalid(error.description)
        }
        return try reload(to: loaded)
    }

    /// Applies a newly loaded (and validated) configuration as a whole or not at all: every
    /// setting that can change live takes the new value (`ConfigurationReload.liveSettings`), the
    /// TLS files of the pile and API listeners are read again (new handshakes use them, live
    /// connections keep theirs), and settings that need a restart keep their running value and
    /// are named. Throws, changing nothing, when the combination does not validate or a TLS file
    /// does not load.
    public func reload(to loaded: GatewayConfiguration) throws(ConfigurationReloadError) -> ConfigurationReload {
        reloadLock.lock()
        defer { reloadLock.unlock() }
        let running = context.config
        let apiTLS = apiTLS.withLockedValue { $0 }
        let plan = ConfigurationReload.plan(running: running, loaded: loaded, pileTLSLive: pileTLS != nil, apiTLSLive: apiTLS != nil)
        let effective = plan.effective
        do { try effective.validate() } catch {
            context.logger.error("configuration not reloaded, the running one stays", metadata: ["reason": "\(error)"])
            throw .invalid(error.description)
        }
        // Every certificate is loaded before anything changes.
        var certificates: [String] = []
        var pileLoaded: PileTLSCredentials.Loaded?
        var apiContext: NIOSSLContext?
        do {
            if pileTLS != nil {
                pileLoaded = try PileTLSCredentials.load(effective)
                certificates.append("pile")
            }
            if apiTLS != nil {
                apiContext = try APITLSCredentials.load(effective)
                certificates.append("api")
            }
        } catch {
            context.logger.error("configuration not reloaded, the running one stays", metadata: ["reason": "\(error)"])
            throw .certificate("\(error)")
        }
        if let pileLoaded { pileTLS?.install(pileLoaded) }
        if let apiContext { apiTLS?.install(apiContext) }
        context.live.replace(effective)
        context.admission.apply(effective)
        for hook in reloadHooks.withLockedValue({ $0 }) { hook(effective) }
        let result = ConfigurationReload(
            applied: plan.applied, restartRequired: plan.restartRequired, certificatesReloaded: certificates,
            generation: context.live.generation)
        context.logger.notice(
            "configuration reloaded",
            metadata: [
                "applied": "\(plan.applied.joined(separator: ","))", "restart_required": "\(plan.restartRequired.joined(separator: ","))",
                "certificates": "\(certificates.joined(separator: ","))",
            ])
        if !plan.restartRequired.isEmpty {
            context.logger.warning(
                "changed settings that apply only after a restart", metadata: ["settings": "\(plan.restartRequired.joined(separator: ","))"])
        }
        return result
    }

    /// Runs until graceful shutdown is requested (ServiceLifecycle), then drains.
    public func run() async throws {
        try await start()
        // Returns when shutdown is requested (or throws on cancellation); either way, drain.
        _ = try? await gracefulShutdown()
        await shutdown()
    }
}

/// Why the gateway could not start, in one sentence naming the address or file.
public struct GatewayStartError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
