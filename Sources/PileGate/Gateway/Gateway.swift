import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import YKC

/// A gateway: pile listeners, registry, admin/backend API, the long-running loops, and their
/// order at start and shutdown.
///
/// Its pieces are swift-service-lifecycle services (`services`), in start order: the API, the
/// registry flush, the token refresh, the services handed in (the cluster node, the hub's outbox
/// and sweeper), and the pile listeners. One `ServiceGroup` runs them and shuts them down in
/// reverse order: the listeners drain the piles first, while the API, the hub and the outbox are
/// still up; the API stops last. `pilegate serve` puts `services` in its own group with the
/// signals; embedders can run the gateway itself as a `Service` (`run()`), and tests use
/// `start()` (which returns once the ports are bound; read them back from `pilePort`/`apiPort`)
/// and `shutdown()`.
public final class Gateway: Service, Sendable {
    public let context: GatewayContext
    public let group: any EventLoopGroup
    /// The TLS pile listener's certificate (nil without `pileTLSCertificate`), re-read by `reload(to:)`.
    public let pileTLS: PileTLSCredentials?
    /// The API's TLS context (nil for plain HTTP), re-read by `reload(to:)`.
    let apiTLS: APITLSCredentials?
    /// Open API connections and their bound's episodes (`APIConnectionLimit`), for `/metrics`.
    let apiConnections = APIConnectionCounts()
    /// Where a reload reads the configuration from (`pilegate serve`: its file and environment).
    private let configurationSource: (@Sendable () throws(ConfigurationError) -> GatewayConfiguration)?
    private let reloadHooks = NIOLockedValueBox<[@Sendable (GatewayConfiguration) -> Void]>([])
    /// One reload at a time (SIGHUP and the API may race).
    private let reloadLock = NIOLock()
    /// How far start-up has come: the API's port, the pile ports, or why the gateway did not start.
    let startup = GatewayStartup()
    /// The service group `start()` runs the gateway's services in, and the task running it.
    private let running = NIOLockedValueBox(Running.notStarted)

    private enum Running {
        case notStarted
        case running(ServiceGroup, Task<Void, Never>)
        /// Stopped: the registry was flushed and closed (by its loop's end, or by `shutdown()`).
        case stopped
    }
    /// Long-running work of other components, run in the gateway's service group after its own
    /// loops and before the pile listeners (so stopped after the drain, before its own loops).
    private let componentServices: [any Service]
    public let metrics: GatewayMetrics
    /// API credentials (tokens in the registry's database, client-certificate scopes).
    public let auth: APIAuthenticator
    /// Routes other components add to the API (hub, lanes, outbox), added at start.
    public let routes: [AdminAPI.Routes]
    /// Extra sections of `/v1/stats`, by name.
    public let statsProviders: [String: @Sendable () -> JSONValue]
    /// Cluster mode: reaches piles held by other nodes (lookups, kicks).
    let cluster: ClusterCommandRouter?

    public var config: GatewayConfiguration { context.config }
    public var counters: GatewayCounters { context.counters }
    public var directory: SessionDirectory { context.directory }
    public var registry: PileRegistry { context.registry }

    /// - Parameters:
    ///   - stores: the registry and the stores beside it, opened first by whoever builds pieces
    ///     that need them (`GatewayAssembly`); opened here when not given.
    ///   - sink: where sessions' events go (the backend hub).
    ///   - group: the event loops; one per core when not given.
    ///   - routes: other components' API routes, added when the API starts.
    ///   - statsProviders: extra sections of `/v1/stats`, by name.
    ///   - services: other components' long-running work, run after the gateway's own loops and
    ///     before the pile listeners (`services`).
    ///   - cluster: in cluster mode, reaches piles held by other nodes (lookups, kicks).
    ///   - configurationSource: where `reloadConfiguration()` reads the configuration from
    ///     (`pilegate serve`: its `--config` file with the environment on top, as at start-up).
    public init(
        config: GatewayConfiguration, stores: GatewayStores? = nil, sink: any GatewayEventSink = NoBackendSink(),
        group: (any EventLoopGroup)? = nil, logger: Logger = Logger(label: "pilegate"), routes: [AdminAPI.Routes] = [],
        statsProviders: [String: @Sendable () -> JSONValue] = [:], services: [any Service] = [], cluster: ClusterCommandRouter? = nil,
        configurationSource: (@Sendable () throws(ConfigurationError) -> GatewayConfiguration)? = nil
    ) throws {
        self.componentServices = services
        self.routes = routes
        self.statsProviders = statsProviders
        self.cluster = cluster
        self.configurationSource = configurationSource
        let stores = try stores ?? GatewayStores.open(config: config, logger: logger)
        self.context = GatewayContext(
            config: config, counters: GatewayCounters(), directory: stores.directory, registry: stores.registry, keys: stores.keys,
            limits: stores.limits, sink: sink, logger: logger)
        self.group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: config.resolvedEventLoopThreads)
        self.metrics = GatewayMetrics(counters: context.counters)
        do {
            self.pileTLS = config.pileTLSCertificate.isEmpty ? nil : try PileTLSCredentials(config: config)
        } catch {
            throw GatewayStartError(message: error.description)
        }
        // TLS and mutual TLS for the API (docs/SECURITY.md): loaded here so that a file that
        // does not load stops the gateway before anything runs.
        do {
            self.apiTLS = try APITLSCredentials.load(config).map(APITLSCredentials.init)
        } catch {
            throw GatewayStartError(message: "\(error)")
        }
        let auth = stores.auth
        self.auth = auth
        metrics.addCollector { auth.collectMetrics($0) }
        let apiConnections = self.apiConnections
        metrics.addCollector { apiConnections.collectMetrics($0) }
    }

    /// The bound pile port.
    public var pilePort: Int? { startup.pilePorts?.plain }
    /// The bound TLS pile port (nil without `pileTLSCertificate`).
    public var pileTLSPort: Int? { startup.pilePorts?.tls }
    /// The bound API port.
    public var apiPort: Int? { startup.apiPort }
    public var isReady: Bool { notReadyReasons.isEmpty }

    /// Why `/readyz` answers 503: starting, shutting down, or a store that cannot commit.
    public var notReadyReasons: [String] {
        var reasons: [String] = []
        if !startup.isStarted { reasons.append("starting") }
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

    /// The gateway's pieces as services, in start order; a `ServiceGroup` shuts them down in
    /// reverse:
    /// 1. the API (`AdminAPI`), which stops last: it stays up through the drain, so backends get
    ///    every drained pile's `pile_offline` and the outbox can deliver to the end, and it is
    ///    bounded whatever clients do (about 2 × `shutdownGrace`: a backend that stops reading is
    ///    cut off);
    /// 2. the registry flush (at shutdown: a final flush, then the database closes) and the token
    ///    refresh, which like the next start once the API has tried to listen (`StartsAfterAPI`);
    /// 3. the services handed in at creation (the cluster node, then the hub's: the outbox with
    ///    its last commit, the hub's sweeper, …);
    /// 4. the pile listeners (`PileListenerService`), which bind once the API listens and drain
    ///    first: stop accepting, close piles spread over `drainWindow`, wait up to
    ///    `shutdownGrace` for the connections to end.
    ///
    /// A service that throws (a port taken) shuts the rest down in the same order, and the group
    /// throws its error. The services run once: the registry closes at their end.
    public var services: [ServiceGroupConfiguration.ServiceConfiguration] {
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
        let startup = self.startup
        let afterAPI = (loops + componentServices).map { StartsAfterAPI(service: $0, startup: startup) as any Service }
        return ([AdminAPI(gateway: self)] + afterAPI + [PileListenerService(gateway: self)]).map {
            ServiceGroupConfiguration.ServiceConfiguration(service: $0, failureTerminationBehavior: .gracefullyShutdownGroup)
        }
    }

    /// Runs the gateway's `services` in a service group of their own until graceful shutdown
    /// (of the group running the gateway), then shuts them down in reverse order: the piles
    /// drain first. Throws the error of a service that could not start (naming the address).
    public func run() async throws {
        let group = ServiceGroup(configuration: .init(services: services, logger: context.logger))
        do {
            try await group.run()
        } catch {
            startup.gatewayFailed(error)
            throw error
        }
        startup.gatewayFailed(GatewayStartError(message: "the gateway stopped before it started"))
        context.logger.notice("pilegate stopped")
    }

    /// Starts the gateway's `services` in a service group of its own, in a detached task (a task
    /// created here would inherit the graceful-shutdown handler of a group running the caller,
    /// and drain at once), and returns once the pile listeners are bound. Throws the error of a
    /// service that could not start (naming the address); nothing is left running then.
    /// `shutdown()` stops it.
    public func start() async throws {
        let group = ServiceGroup(configuration: .init(services: services, logger: context.logger))
        let (startup, logger) = (self.startup, context.logger)
        let task = Task.detached(priority: Task.currentPriority) {
            do {
                try await group.run()
                logger.notice("pilegate stopped")
                startup.gatewayFailed(GatewayStartError(message: "the gateway stopped before it started"))
            } catch {
                startup.gatewayFailed(error)
            }
        }
        running.withLockedValue { $0 = .running(group, task) }
        do {
            try await startup.waitUntilStarted()
        } catch {
            await task.value
            running.withLockedValue { $0 = .stopped }
            throw error
        }
    }

    /// Graceful shutdown of what `start()` started, in the reverse order of start (`services`):
    /// the piles drain, the long-running loops stop, the API closes last. Bounded whatever
    /// clients do: drain window + `shutdownGrace` for piles that do not close + about
    /// 2 × `shutdownGrace` for API connections. When the gateway never started, flushes and
    /// closes the registry.
    public func shutdown() async {
        let state = running.withLockedValue { r in
            defer { if case .notStarted = r { r = .stopped } }
            return r
        }
        switch state {
        case .running(let group, let task):
            await group.triggerGracefulShutdown()
            await task.value
        case .notStarted:
            context.shuttingDown.store(true, ordering: .relaxed)
            _ = try? await context.registry.flush()
            await context.registry.close()
        case .stopped:
            break
        }
    }

    /// Work to do with each configuration a reload puts in force (serve: the log level).
    public func onReload(_ hook: @escaping @Sendable (GatewayConfiguration) -> Void) {
        reloadHooks.withLockedValue { $0.append(hook) }
    }

    /// SIGHUP and `POST /v1/config/reload`: reads the configuration source again and applies it
    /// with `reload(to:)`.
    public func reloadConfiguration() throws(ConfigurationReloadError) -> ConfigurationReload {
        guard let source = configurationSource else { throw .unavailable }
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
}

/// Why the gateway could not start, in one sentence naming the address or file.
public struct GatewayStartError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
