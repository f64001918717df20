import ArgumentParser
import Foundation
import Logging
import Metrics
import PileGate
import Prometheus
import ServiceLifecycle

/// `pilegate serve`: runs the gateway until SIGTERM/SIGINT, then drains and exits 0.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the gateway (piles on 0.0.0.0:8767, API on 127.0.0.1:8780, data in ./pilegate-data by default).",
        discussion: """
            Settings come from the embedded defaults, then --config FILE (a JSON object of settings), then \
            PILEGATE_* environment variables (pilePort → PILEGATE_PILE_PORT). An invalid setting stops start-up \
            with a message naming it. --print-config shows the effective settings and exits. SIGHUP reads the \
            settings again and applies those that can change live (docs/CONFIGURATION.md, "Reloading").
            """)

    @Option(name: .long, help: "A JSON file of settings.")
    var config: String?

    @Flag(name: .long, help: "Print the effective configuration as JSON and exit.")
    var printConfig = false

    @Flag(
        name: .long,
        help: """
            Start with new, empty stores when pilegate.sqlite or outbox.sqlite exists but is empty or unreadable \
            (the old files are moved aside). Without it such a store stops start-up (setting freshStore).
            """)
    var freshStore = false

    func run() async throws {
        var settings: GatewayConfiguration
        do {
            settings = try GatewayConfiguration.load(file: config)
        } catch {
            FileHandle.standardError.write(Data("pilegate: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if freshStore { settings.freshStore = true }
        if printConfig {
            print(settings.jsonDescription)
            return
        }
        // The level is shared by every logger and follows reloads of `logLevel`.
        let level = LiveLogLevel(Logger.Level(rawValue: settings.logLevel) ?? .info)
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .trace
            return LiveLevelLogHandler(handler, level: level)
        }
        let logger = Logger(label: "pilegate")
        // SIGHUP (and POST /v1/config/reload) read the file and the environment again, as at
        // start-up, and apply what can change live (Gateway.reload); the gateway logs the outcome.
        let file = config
        let fresh = freshStore
        let gateway: Gateway
        do {
            gateway = try GatewayAssembly.make(config: settings, logger: logger) { () throws(ConfigurationError) in
                var c = try GatewayConfiguration.load(file: file)
                if fresh { c.freshStore = true }
                return c
            }
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: gateway.metrics.registry))
        gateway.onReload { c in level.level = Logger.Level(rawValue: c.logLevel) ?? level.level }
        // One service group for the process: SIGHUP's reloads, then the gateway's pieces in
        // their start order (Gateway.services: the API, the loops, the hub's, the pile
        // listeners); SIGTERM/SIGINT shut them down in reverse, the piles draining first.
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: HangupReloadService(gateway: gateway))] + gateway.services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        do {
            try await group.run()
            logger.notice("pilegate stopped")
        } catch {
            // Start-up errors (a port taken, a host that does not resolve) name the address.
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
    }
}
