import Hummingbird
import Logging
import NIOConcurrencyHelpers
import YKC

/// Builds a gateway with every component attached, as `pilegate serve` runs it: the backend hub
/// as the event sink (WebSocket subscriptions, commands), and the lane rule book deciding each
/// session's lane at login (`GET/PUT /v1/lanes`).
public enum GatewayAssembly {
    public static func make(config: GatewayConfiguration, logger: Logger) throws -> Gateway {
        // Recovered before any pile is accepted (start() binds the listener later).
        var outboxSettings = Outbox.Settings()
        outboxSettings.commitSpacing = config.outboxCommitSpacing
        outboxSettings.serviceRetention = config.outboxServiceRetention
        outboxSettings.maxEvents = config.outboxMaxEvents
        outboxSettings.freshStore = config.freshStore
        let outbox = try Outbox(directory: config.dataDirectory, settings: outboxSettings, logger: logger)
        let hub = BackendHub(config: config.hub, outbox: outbox, logger: logger)
        // Route collections are built at start(); the rule book needs the gateway's database, so
        // it is created right after the gateway and reached through this box.
        let bookBox = NIOLockedValueBox<LaneRuleBook?>(nil)
        let laneRoutes: AdminAPI.Routes = {
            bookBox.withLockedValue { $0 }?.routes ?? RouteCollection(context: AdminAPI.Context.self)
        }
        // Cluster mode: the node's NATS membership, a service stopped after the hub and the
        // outbox (services shut down in reverse order), so a drain's pile_offline events still
        // cross the cluster. It reads the gateway's pile count and API port through this box.
        let gatewayBox = NIOLockedValueBox<Gateway?>(nil)
        let cluster: ClusterNode?
        if config.clusterEnabled {
            cluster = try ClusterNode(config: config, logger: logger) {
                guard let gateway = gatewayBox.withLockedValue({ $0 }) else { return (0, nil) }
                return (gateway.directory.count, gateway.apiPort.map { "\(config.apiHost):\($0)" })
            }
        } else {
            cluster = nil
        }
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
            let directory = ClusterPileDirectory(node: cluster, nodeTimeout: config.clusterNodeTimeout, logger: logger)
            let router = ClusterCommandRouter(directory: directory, defaultCommandTimeout: config.hub.commandTimeout, logger: logger)
            let takeover = ClusterTakeover(directory: directory, logger: logger)
            for part: any ClusterComponent in [directory, router, takeover] { cluster.add(part) }
            sink = ClusterSessionSink(inner: hub, directory: directory, takeover: takeover)
            clusterPiles = (directory, router, takeover)
        }
        var statsProviders: [String: @Sendable () -> JSONValue] = [
            "hub": { hub.statsJSON() },
            "lanes": { bookBox.withLockedValue { $0 }.map { .number(Double($0.version)) } ?? .null },
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
        let gateway: Gateway
        let book: LaneRuleBook
        do {
            gateway = try Gateway(
                config: config, sink: sink, logger: logger, routes: hub.routes + [laneRoutes, { WebView.routes() }],
                statsProviders: statsProviders, services: (cluster.map { [$0] } ?? []) + hub.services)
            let laneSharing = cluster.map { ClusterLaneRules(node: $0) }
            book = try LaneRuleBook(registry: gateway.registry, sharing: laneSharing, logger: logger)
            if let cluster, let laneSharing {
                cluster.add(laneSharing.watcher(for: book, logger: logger))
                ClusterPileBans.install(on: cluster, admission: gateway.context.admission, logger: logger)
                ClusterProvisionedPiles.install(on: cluster, registry: gateway.registry, logger: logger)
            }
        } catch {
            // The gateway's own stores could not open: nothing runs, the outbox closes too.
            outbox.close()
            throw error
        }
        bookBox.withLockedValue { $0 = book }
        gatewayBox.withLockedValue { $0 = gateway }
        hub.decideLanes(with: { login, host in book.lane(for: login, remoteHost: host) }, version: { book.version })
        // The outbox and the hub's sweeper run in the gateway's service group (`hub.services`),
        // stopped after the piles have drained.
        hub.attach(to: gateway)
        if let cluster, let models = hub.billingModels.withLockedValue({ $0 }) {
            ClusterBillingModels.install(on: cluster, cache: models, logger: logger)
        }
        if let cluster, let authorizer = hub.offlineAuthorizer {
            ClusterOfflineAuthorization.install(on: cluster, authorizer: authorizer, logger: logger)
        }
        if let eventStream { gateway.metrics.addCollector { eventStream.collectMetrics($0) } }
        if let cluster, let clusterPiles {
            clusterPiles.directory.attach(sessions: gateway.directory, events: hub)
            clusterPiles.router.attach(gateway: gateway, hub: hub)
            clusterPiles.takeover.attach(sessions: gateway.directory)
            gateway.metrics.addCollector { w in cluster.collectMetrics(w, directory: clusterPiles.directory) }
        }
        return gateway
    }
}
