import Atomics
import Logging
import NIOCore

/// What every pile connection shares: configuration, counters, the session directory, the
/// registry, admission control and the event sink. Created once per gateway.
public final class GatewayContext: Sendable {
    /// The configuration in force: read where a setting takes effect, it follows reloads
    /// (`Gateway.reload`); settings that need a restart keep their start-up values in it.
    public var config: GatewayConfiguration { live.current }
    /// The holder `config` reads, replaced by a reload.
    public let live: LiveSettings
    public let counters: GatewayCounters
    public let directory: SessionDirectory
    public let registry: PileRegistry
    /// Per-pile 3DES keys for encrypted frames.
    public let keys: PileKeyStore
    /// Per-pile overrides of the per-connection limits, applied at login.
    public let limits: PileLimitStore
    public let admission: AdmissionControl
    public let sink: any GatewayEventSink
    public let logger: Logger
    let connectionIds = ManagedAtomic<UInt64>(0)
    /// Connection numbers in accept order (a takeover keeps the newest connection).
    let acceptOrder: AcceptOrder
    /// Set when shutdown begins: new connections are closed at once.
    let shuttingDown = ManagedAtomic(false)
    let liveness: LivenessSweeper.Registry
    /// The limits a connection accepted now follows, shared by all connections accepted under
    /// the same configuration; a reload makes new ones for the connections after it.
    var sessionLimits: PileSessionLimits { live.sessionLimits }

    init(
        config: GatewayConfiguration, counters: GatewayCounters, directory: SessionDirectory, registry: PileRegistry,
        keys: PileKeyStore, limits: PileLimitStore, sink: any GatewayEventSink, logger: Logger
    ) {
        self.live = LiveSettings(config)
        self.counters = counters
        self.directory = directory
        self.registry = registry
        self.keys = keys
        self.limits = limits
        self.admission = AdmissionControl(config: config, counters: counters, logger: logger)
        self.liveness = LivenessSweeper.Registry(loginTimeout: config.loginTimeout, livenessTimeout: config.livenessTimeout)
        self.sink = sink
        self.logger = logger
        let ids = connectionIds
        self.acceptOrder = AcceptOrder(next: { ids.wrappingIncrementThenLoad(ordering: .relaxed) })
    }
}
