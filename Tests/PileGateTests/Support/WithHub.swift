import Foundation
import Logging
import NIOPosix
@testable import PileGate
import YKC

/// Runs `body` against a gateway whose event sink is a backend hub with its outbox, as
/// `pilegate serve` runs it: the outbox lives in the gateway's temporary data directory (or
/// `dataDirectory`), the hub is built with the gateway's stores before the gateway, and the
/// outbox and the hub's sweeper run in the gateway's service group.
func withHub(
    dataDirectory: String? = nil,
    lanes: @escaping @Sendable (Login, String) -> String = { _, _ in "" },
    hub configureHub: (inout HubConfiguration) -> Void = { _ in },
    outbox configureOutbox: (inout Outbox.Settings) -> Void = { _ in },
    configurationSource: (@Sendable () throws(ConfigurationError) -> GatewayConfiguration)? = nil,
    _ configure: (inout GatewayConfiguration) -> Void = { _ in },
    _ body: (TestGateway, BackendHub) async throws -> Void
) async throws {
    var hc = HubConfiguration()
    hc.warmupWindow = 0
    hc.replyTimeout = 1
    hc.commandTimeout = 2
    configureHub(&hc)
    var settings = Outbox.Settings()
    settings.redeliveryTimeout = 1
    configureOutbox(&settings)
    var logger = Logger(label: "hub-test")
    logger.logLevel = .critical
    // The directory TestGateway would make (it removes directories named so when it stops).
    let directory = dataDirectory ?? NSTemporaryDirectory() + "pilegate-test-" + UUID().uuidString
    let config = TestGateway.configuration {
        configure(&$0)
        $0.dataDirectory = directory
    }
    let outbox = try Outbox(directory: config.dataDirectory, settings: settings, logger: logger)
    do {
        let stores = try GatewayStores.open(config: config, logger: logger)
        let hub = BackendHub(
            config: hc, gateway: config, stores: stores, group: MultiThreadedEventLoopGroup.singleton, outbox: outbox, logger: logger,
            lanes: lanes)
        try await withGateway(
            config: config, stores: stores, sink: hub, routes: hub.routes, services: hub.services, configurationSource: configurationSource
        ) { gw in
            hub.register(on: gw.gateway)
            try await body(gw, hub)
        }
    } catch {
        // A gateway that did not start never ran the outbox's service, which closes it.
        outbox.close()
        throw error
    }
}
