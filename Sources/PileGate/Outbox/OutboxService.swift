import ServiceLifecycle

/// The outbox's life as a swift-service-lifecycle `Service`: its group-commit writer, delivery
/// and compaction loops and the summary refresh run from the start of the gateway's service
/// group until its graceful shutdown; then the outbox commits what is queued, records when
/// services were last seen, checkpoints and closes (`Outbox.stop()`).
struct OutboxService: Service {
    let outbox: Outbox
    /// Hands a stored event to an instance of a service (the hub's routing).
    let deliver: Outbox.Deliver

    func run() async {
        outbox.start(deliver: deliver)
        // Returns on graceful shutdown, throws on cancellation: either way the outbox stops.
        try? await gracefulShutdown()
        await outbox.stop()
    }
}
