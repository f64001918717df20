import ServiceLifecycle

/// A service of the gateway that starts once the API has tried to listen (`GatewayStartup`).
///
/// A `ServiceGroup` starts its services all at once; the gateway's loops and the services handed
/// in start after the API, as they always have: the cluster node's first heartbeat already
/// carries the API's address, and an outbox or a sweeper never runs before the API that serves
/// its backends. When the API cannot listen they still start, and are shut down in order at
/// once (the registry flushed and closed, the outbox closed).
struct StartsAfterAPI: Service {
    let service: any Service
    let startup: GatewayStartup

    func run() async throws {
        _ = try? await startup.waitForAPI()
        try await service.run()
    }
}
