import PileGate
import ServiceLifecycle

/// Runs `body` against a fresh gateway and always stops it afterwards.
func withGateway<T>(
    sink: any GatewayEventSink = NoBackendSink(), routes: [AdminAPI.Routes] = [], services: [any Service] = [],
    _ configure: (inout GatewayConfiguration) -> Void = { _ in },
    _ body: (TestGateway) async throws -> T
) async throws -> T {
    let gw = try await TestGateway.start(sink: sink, routes: routes, services: services, configure)
    return try await run(gw, body)
}

/// Runs `body` against a gateway started with `config` (and `stores`, when pieces built before it
/// share them) and always stops it afterwards.
func withGateway<T>(
    config: GatewayConfiguration, stores: GatewayStores? = nil, sink: any GatewayEventSink = NoBackendSink(),
    routes: [AdminAPI.Routes] = [], services: [any Service] = [],
    configurationSource: (@Sendable () throws(ConfigurationError) -> GatewayConfiguration)? = nil,
    _ body: (TestGateway) async throws -> T
) async throws -> T {
    let gw = try await TestGateway.start(
        config: config, stores: stores, sink: sink, routes: routes, services: services, configurationSource: configurationSource)
    return try await run(gw, body)
}

private func run<T>(_ gw: TestGateway, _ body: (TestGateway) async throws -> T) async throws -> T {
    do {
        let result = try await body(gw)
        await gw.stop()
        return result
    } catch {
        await gw.stop()
        throw error
    }
}
