import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import YKC

/// Builds a gateway with every component attached, as `pilegate serve` runs it: the backend hub
/// as the event sink (WebSocket subscriptions, commands), and the lane rule book deciding each
/// session's lane at login (`GET/PUT /v1/lanes`).
///
/// Each piece is built complete, with its dependencies at creation, in the order they depend on
/// each other: the outbox, the gateway's stores (`GatewayStores`) and event loops, the cluster
/// node, the lane rule book, the hub, the cluster's pile features, and last the gateway, which
/// takes the hub as its sink and the pieces' routes, stats and services.
public enum GatewayAssembly {
    /// - Parameter configurationSource: where a reload (SIGHUP, `POST /v1/config/reload`) reads
    ///   the configuration from; without one a reload answers that it is unavailable.
    public static func make(
        config: GatewayConfiguration, logger: Logger,
        configurationSource: (@Sendable () throws(ConfigurationError) -> GatewayConfiguration)? = nil
    ) throws -> Gateway {
        // Recovered before any pile is accepted (the listeners bind when the gateway runs).
        var outboxSettings = Outbox.Settings()
        outboxSettings.commitSpacing = config.outboxCommitSpacing
        outboxSettings.serviceRetention = config.outboxServiceRetention
        outboxSettings.maxEvents = config.outboxMaxEvents
        outboxSettings.relayInFlight = config.clusterPublishInFlight
        outboxSettings.freshStore = config.freshStore
        let outbox = try Outbox(directory: config.dataDirectory, settings: outboxSettings, logger: logger)
        do {
            return try make(config: config, outbox: outbox, logger: logger, configurationSource: configurationSource)
        } catch {
            // The gateway's own stores could not open: nothing runs, the outbox closes too.
            outbox.close()
            throw error
        }
    }

    private static func make(
        config: GatewayConfiguration, outbox: Outbox, logger: Logger,
        configurationSource: (@Sendable () throws(ConfigurationError) -> GatewayConfiguration)?
    ) throws -> Gateway {
        let stores = try GatewayStores.open(config: config, logger: logger)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: config.resolvedEventLoopThreads)
        // Cluster mode: the node's NATS membership, a service stopped after the hub and the
        // outbox (services shut down in reverse order), so a drain's pile_offline events still
        // cross the cluster. It advertises the gateway's API port, known only once the gateway
        // (built last, running the node as one of its services) listens: the node reaches it
        // through this box, set once the gateway exists.
        let gatewayBox = NIOLockedValueBox<Gateway?>(nil)
        let cluster: ClusterNode?
        if config.clusterEnabled {
            let sessions = stores.directory
            cluster = try ClusterNode(config: config, logger: logger) {
                (sessions.count, gatewayBox.withLockedValue({ $0 })?.apiPort.map { "\(config.apiHost):\($0)" })
            }
        } else {
            cluster = nil
        }
        let laneSharing = cluster.map { ClusterLaneRules(node: $0) }
        let book = try LaneRuleBook(registry: stores.registry, sharing: laneSharing, logger: logger)
        let hub = BackendHub(
            config: config.hub, gateway: config, stores: stores, group: group, outbox: outbox, logger: logger,
            lanes: { login, host in book.lane(for: login, remoteHost: host) }, laneVersion: { book.version })
        // Cluster mode: must-deliver events go to the cluster's stream first (the outbox is the
        // fallback while it is unavailable) and reach backends from there.
        let eventStream = cluster.map {
            ClusterEventStream(hub: hub, subjects: $0.subjects, settings: ClusterEventStream.Settings(config: config), logger: logger)
        }
        if let cluster, let eventStream {
            outbox.relay(via: eventStream)
            cluster.add(eventStream)
        }
        // The cluster's pile features (docs/CLUSTER.md): the pile directory, commands and lookups
        // across nodes, one session per pile. Sessions reach them through the event sink.
        var clusterPiles: (directory: ClusterPileDirectory, router: ClusterCommandRouter, takeover: ClusterTakeover)?
        var sink: any GatewayEventSink = hub
        if let cluster {
            let directory = ClusterPileDirectory(
                node: cluster, nodeTimeout: config.clusterNodeTimeout, sessions: stores.directory, events: hub, logger: logger)
            let router = ClusterCommandRouter(
                directory: directory, stores: stores, hub: hub, defaultCommandTimeout: config.hub.commandTimeout, logger: logger)
            let takeover = ClusterTakeover(directory: directory, sessions: stores.directory, deliveries: hub.deliveryWatches, logger: logger)
            for part: any ClusterComponent in [directory, router, takeover] { cluster.add(part) }
            sink = ClusterSessionSink(inner: hub, directory: directory, takeover: takeover)
            clusterPiles = (directory, router, takeover)
        }
        var statsProviders: [String: @Sendable () -> JSONValue] = [
            "hub": { hub.statsJSON() },
            "lanes": { .number(Double(book.version)) },
            "outbox": { hub.outboxJSON() },
            "offlineAuthorization": { hub.offlineAuthorizer?.statsJSON() ?? .null },
        ]
        if let cluster {
            let piles = clusterPiles
            statsProviders["cluster"] = {
                guard case .object(var o) = cluster.statsJSON(), let piles else { return cluster.statsJSON() }
                o["directory"] = piles.directory.statsJSON()
                o["takeovers"] = piles.takeover.statsJSON()
                return .object(o)
            }
            // Backends see one gateway: events of every node's piles reach every node's backends.
            let relay = ClusterEventRelay(hub: hub, logger: logger)
            cluster.add(relay)
            statsProviders["clusterEvents"] = { relay.statsJSON() }
        }
        // The outbox and the hub's sweeper run in the gateway's service group (`hub.services`),
        // stopped after the piles have drained.
        let gateway = try Gateway(
            config: config, stores: stores, sink: sink, group: group, logger: logger,
            routes: hub.routes + [{ book.routes }, { WebView.routes() }], statsProviders: statsProviders,
            services: (cluster.map { [$0] } ?? []) + hub.services, cluster: clusterPiles?.router,
            configurationSource: configurationSource)
        gatewayBox.withLockedValue { $0 = gateway }
        if let cluster, let laneSharing {
            cluster.add(laneSharing.watcher(for: book, logger: logger))
            ClusterPileBans.install(on: cluster, admission: gateway.context.admission, logger: logger)
            ClusterProvisionedPiles.install(on: cluster, registry: stores.registry, logger: logger)
        }
        hub.register(on: gateway)
        if let cluster, let models = hub.billingModels {
            ClusterBillingModels.install(on: cluster, cache: models, logger: logger)
        }
        if let cluster, let authorizer = hub.offlineAuthorizer {
            ClusterOfflineAuthorization.install(on: cluster, authorizer: authorizer, logger: logger)
        }
        if let eventStream { gateway.metrics.addCollector { eventStream.collectMetrics($0) } }
        if let cluster, let clusterPiles {
            gateway.metrics.addCollector { w in cluster.collectMetrics(w, directory: clusterPiles.directory) }
        }
        return gateway
    }
}
