import PileGate
import ServiceLifecycle

/// Runs `body` against a fresh gateway and always stops it afterwards.
func withGateway<T>(
    sink: any GatewayEventSink = NoBackendSink(), routes: [AdminAPI.Routes] = [], services: [any Service] = [],
    _ configure: (inout GatewayConfiguration) -> Void = { _ in },
    _ body: (TestGateway) async throws -> T
) async throws -> T {
    let gw = try await TestGateway.start(sink: sink, routes: routes, services: services, configure)
    do {
        let result = try await body(gw)
        await gw.stop()
        return result
    } catch {
        await gw.stop()
        throw error
    }
}
