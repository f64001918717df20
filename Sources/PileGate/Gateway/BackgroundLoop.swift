import ServiceLifecycle

/// A long-running loop of the gateway (the registry flush, the token refresh, the hub's
/// sweeper) as a swift-service-lifecycle `Service`: `loop` runs until graceful shutdown cancels
/// it, then `finish` runs once (a final flush, a close).
///
/// The loops are services of the gateway's one group (`Gateway.services`), started before the
/// pile listeners, so shut down, in reverse order, after the piles have drained.
struct BackgroundLoop: Service {
    /// What the loop is, for logs.
    let name: String
    /// Runs until its task is cancelled.
    let loop: @Sendable () async -> Void
    /// Runs after the loop has ended: the last of its work.
    let finish: @Sendable () async -> Void

    init(name: String, loop: @escaping @Sendable () async -> Void, finish: @escaping @Sendable () async -> Void = {}) {
        self.name = name
        self.loop = loop
        self.finish = finish
    }

    func run() async {
        await cancelWhenGracefulShutdown(loop)
        await finish()
    }
}
