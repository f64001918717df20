import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOPosix
@testable import PileGate
import PileSim
import ServiceLifecycle
import Testing
import YKC

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The gateway's pieces as services of one group (`Gateway.services`): the order they start
/// and stop in, and a gateway embedded as a `Service` under a group of someone else's.
@Suite("Gateway services: one group, shut down in reverse order")
struct GatewayServicesTests {
    /// A handed-in service that, when the shutdown reaches it, looks at the gateway: how many
    /// piles are still connected, and what the API answers.
    final class ShutdownProbe: Service, Sendable {
        struct Seen: Sendable, Equatable {
            var connections: Int
            var health: Int
            var readiness: Int
        }
        let gateway = NIOLockedValueBox<Gateway?>(nil)
        let seen = NIOLockedValueBox<Seen?>(nil)

        func run() async {
            try? await gracefulShutdown()
            guard let gateway = gateway.withLockedValue({ $0 }), let port = gateway.apiPort else { return }
            let seen = Seen(
                connections: gateway.counters.connections.load(ordering: .relaxed),
                health: await GatewayServicesTests.status(port, "/healthz"), readiness: await GatewayServicesTests.status(port, "/readyz"))
            self.seen.withLockedValue { $0 = seen }
        }
    }

    /// `TestGateway`'s settings under this suite's node id.
    static func config(_ configure: (inout GatewayConfiguration) -> Void = { _ in }) -> GatewayConfiguration {
        TestGateway.configuration {
            $0.nodeId = "services-node"
            configure(&$0)
        }
    }

    static var logger: Logger {
        var l = Logger(label: "services-test")
        l.logLevel = .critical
        return l
    }

    static func status(_ port: Int, _ path: String) async -> Int {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!, timeoutInterval: 2)
        request.httpMethod = "GET"
        guard let (_, response) = try? await URLSession.shared.data(for: request) else { return -1 }
        return (response as? HTTPURLResponse)?.statusCode ?? 0
    }

    @Test("in start order: the API, the registry flush, the token refresh, the services handed in, the pile listeners")
    func order() throws {
        let config = Self.config()
        defer { try? FileManager.default.removeItem(atPath: config.dataDirectory) }
        let probe = ShutdownProbe()
        let gateway = try Gateway(config: config, group: MultiThreadedEventLoopGroup.singleton, logger: Self.logger, services: [probe])
        // Between the API and the listeners, each waits for the API to have tried to listen.
        let services = gateway.services.map { ($0.service as? StartsAfterAPI)?.service ?? $0.service }
        let names = services.map { "\(type(of: $0))" }
        #expect(names == ["AdminAPI", "BackgroundLoop", "BackgroundLoop", "ShutdownProbe", "PileListenerService"])
        #expect(gateway.services.map { $0.service is StartsAfterAPI } == [false, true, true, true, false])
        let loops = services.compactMap { ($0 as? BackgroundLoop)?.name }
        #expect(loops == ["registry flush", "token refresh"])
    }

    @Test("run() under a group of the embedder's: the parent's shutdown drains the piles first, then stops the handed-in services while the API still answers")
    func embedded() async throws {
        let config = Self.config()
        defer { try? FileManager.default.removeItem(atPath: config.dataDirectory) }
        let probe = ShutdownProbe()
        let gateway = try Gateway(config: config, group: MultiThreadedEventLoopGroup.singleton, logger: Self.logger, services: [probe])
        probe.gateway.withLockedValue { $0 = gateway }
        let parent = ServiceGroup(services: [gateway], logger: Self.logger)
        let running = Task { try await parent.run() }
        let deadline = Date().addingTimeInterval(10)
        while gateway.pilePort == nil && Date() < deadline { try await Task.sleep(nanoseconds: 20_000_000) }
        let pilePort = try #require(gateway.pilePort)
        let apiPort = try #require(gateway.apiPort)
        #expect(await Self.status(apiPort, "/readyz") == 200)
        var c = SimulatedPileConfig.fast(pileID: PileID("66010600000901")!, gunCount: 1)
        c.reconnect = .never
        c.requestBillingModel = false
        let pile = try await SimulatedPile.connect(to: pilePort, c)
        try await pile.waitForLogin()
        #expect(gateway.directory.count == 1)

        await parent.triggerGracefulShutdown()
        try await running.value
        // The probe stopped after the drain (no pile left), before the API (which answered,
        // not ready).
        #expect(probe.seen.withLockedValue { $0 } == ShutdownProbe.Seen(connections: 0, health: 200, readiness: 503))
        #expect(await pile.state().isConnected == false)
        // The API stopped last: nothing answers any more.
        #expect(await Self.status(apiPort, "/healthz") == -1)
        await pile.stop()
    }

    @Test("a pile port taken: run() throws naming the address, the services already running are stopped, the API closes")
    func startFailure() async throws {
        try await withGateway { taken in
            let config = Self.config { $0.pilePort = taken.pilePort }
            defer { try? FileManager.default.removeItem(atPath: config.dataDirectory) }
            let probe = ShutdownProbe()
            let gateway = try Gateway(config: config, group: MultiThreadedEventLoopGroup.singleton, logger: Self.logger, services: [probe])
            probe.gateway.withLockedValue { $0 = gateway }
            let error = await #expect(throws: GatewayStartError.self) { try await gateway.run() }
            #expect(error?.message.contains("cannot listen for piles on 127.0.0.1:\(taken.pilePort)") == true, "\(String(describing: error))")
            // The handed-in service was shut down (in order: the API still answered then).
            #expect(probe.seen.withLockedValue { $0 }?.health == 200)
            #expect(gateway.apiPort.map { _ in true } == true)
            if let apiPort = gateway.apiPort { #expect(await Self.status(apiPort, "/healthz") == -1) }
            #expect(gateway.pilePort == nil)
        }
    }
}
