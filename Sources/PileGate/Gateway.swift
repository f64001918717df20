import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
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
    private let apiBox = NIOLockedValueBox<AdminAPI?>(nil)
    private let flushTask = NIOLockedValueBox<Task<Void, Never>?>(nil)
    private let tokenRefreshTask = NIOLockedValueBox<Task<Void, Never>?>(nil)
    private let startedBox = NIOLockedValueBox<Bool>(false)
    public let metrics: GatewayMetrics
    /// API credentials (tokens in the registry's database, client-certificate scopes).
    public let auth: APIAuthenticator
    /// Routes other components add to the API (hub, lanes, outbox), installed at start.
    public let routeInstallers: [AdminAPI.RouteInstaller]
    /// Extra sections of `/v1/stats`, by name.
    public let statsProviders: [String: @Sendable () -> JSONValue]

    private let shutdownHooks = NIOLockedValueBox<[@Sendable () async -> Void]>([])

    /// Work to finish at the end of a graceful shutdown (after piles are closed), e.g. the
    /// outbox's last commit.
    public func onShutdown(_ hook: @escaping @Sendable () async -> Void) {
        shutdownHooks.withLockedValue { $0.append(hook) }
    }

    public var config: GatewayConfiguration { context.config }
    public var counters: GatewayCounters { context.counters }
    public var directory: SessionDirectory { context.directory }
    public var registry: PileRegistry { context.registry }

    public init(
        config: GatewayConfiguration, sink: any GatewayEventSink = NoBackendSink(), group: (any EventLoopGroup)? = nil,
        logger: Logger = Logger(label: "pilegate"), routeInstallers: [AdminAPI.RouteInstaller] = [],
        statsProviders: [String: @Sendable () -> JSONValue] = [:]
    ) throws {
        self.routeInstallers = routeInstallers
        self.statsProviders = statsProviders
        let registry = try PileRegistry(directory: config.dataDirectory, logger: logger)
        try registry.markAllOffline(reason: "gateway_restart")
        let keys = try PileKeyStore(database: registry.database, logger: logger)
        self.context = GatewayContext(
            config: config, counters: GatewayCounters(), directory: SessionDirectory(), registry: registry, keys: keys,
            sink: sink, logger: logger)
        self.group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: config.resolvedEventLoopThreads)
        self.metrics = GatewayMetrics(counters: context.counters)
        let auth = APIAuthenticator(
            tokens: try TokenStore(database: registry.database, logger: logger), certificateScopes: config.apiClientCertificateScopes,
            alwaysEnforced: APIAuthenticator.mustAlwaysEnforce(config), logger: logger)
        self.auth = auth
        metrics.addCollector { auth.collectMetrics($0) }
    }

    /// The bound pile port.
    public var pilePort: Int? { listenerBox.withLockedValue { $0?.localAddress?.port } }
    /// The bound API port.
    public var apiPort: Int? { apiBox.withLockedValue { $0?.port } }
    public var isReady: Bool { startedBox.withLockedValue { $0 } && !context.shuttingDown.load(ordering: .relaxed) }

    /// Binds the API and the pile listener and starts background work.
    public func start() async throws {
        let api = try await AdminAPI.start(gateway: self)
        apiBox.withLockedValue { $0 = api }
        let tokens = auth.tokens
        tokenRefreshTask.withLockedValue { $0 = Task { await tokens.runRefreshLoop() } }
        let listener = try await PileListener.bind(gateway: context, group: group)
        listenerBox.withLockedValue { $0 = listener }
        let registry = context.registry
        let interval = context.config.registryFlushInterval
        flushTask.withLockedValue { $0 = Task { await registry.runFlushLoop(interval: interval) } }
        startedBox.withLockedValue { $0 = true }
        context.logger.notice(
            "pilegate started",
            metadata: [
                "node": "\(context.config.nodeId)",
                "piles": "\(context.config.pileHost):\(pilePort ?? context.config.pilePort)",
                "api": "\(context.config.apiHost):\(apiPort ?? context.config.apiPort)",
                "data": "\(context.config.dataDirectory)", "login_policy": "\(context.config.loginPolicy.rawValue)",
            ])
    }

    /// Graceful shutdown: stop accepting, close pile connections spread over the drain window,
    /// flush the registry, stop the API.
    public func shutdown() async {
        guard !context.shuttingDown.exchange(true, ordering: .relaxed) else { return }
        let listener = listenerBox.withLockedValue { $0 }
        await listener?.stopAccepting()
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
        // Connections that never logged in are closed too: the quiescing helper tells every
        // remaining child channel to quiesce, and the session handler closes on that.
        if let listener {
            let done = listener.channel.eventLoop.makePromise(of: Void.self)
            listener.quiesce.initiateShutdown(promise: done)
        }
        await waitForConnections(timeout: 2)
        // Stop the flush loop and wait for it (a write it had started, or put back after a
        // cancellation, must be in `pending` before the final flush takes it).
        let loop = flushTask.withLockedValue { $0 }
        loop?.cancel()
        await loop?.value
        _ = try? await context.registry.flush()
        tokenRefreshTask.withLockedValue { $0 }?.cancel()
        for hook in shutdownHooks.withLockedValue({ $0 }) { await hook() }
        let api = apiBox.withLockedValue { $0 }
        await api?.stop()
        context.logger.notice("pilegate stopped")
    }

    private func waitForConnections(timeout: TimeInterval) async {
        let deadline = Date().addingTimeInterval(timeout)
        while context.counters.connections.load(ordering: .relaxed) > 0 && Date() < deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// Runs until graceful shutdown is requested (ServiceLifecycle), then drains.
    public func run() async throws {
        try await start()
        // Returns when shutdown is requested (or throws on cancellation); either way, drain.
        _ = try? await gracefulShutdown()
        await shutdown()
    }
}
