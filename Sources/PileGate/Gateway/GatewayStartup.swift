import NIOConcurrencyHelpers

/// How far the gateway's start has come, shared by its services.
///
/// A `ServiceGroup` starts its services all at once and knows nothing of readiness, but the
/// gateway's order matters at start as it does at shutdown: the pile listeners bind only once
/// the API listens (a gateway whose API cannot start never accepts a pile), and `start()`,
/// `/readyz` and `pilegate serve` need to know when the piles' ports are bound. The API reports
/// its port (or why it could not listen), the pile listener service reports that the gateway is
/// up (or why not), and whoever waits wakes then.
final class GatewayStartup: Sendable {
    /// The bound pile ports (they matter when configured as 0).
    struct PilePorts: Sendable {
        var plain: Int?
        /// Nil without `pileTLSCertificate`.
        var tls: Int?
    }

    private let api = Milestone<Int>()
    private let started = Milestone<PilePorts>()

    /// The bound API port, once the API listens.
    var apiPort: Int? { api.value }
    /// The bound pile ports, once the gateway is up.
    var pilePorts: PilePorts? { started.value }
    /// Whether the pile listeners are bound (the gateway is up).
    var isStarted: Bool { started.value != nil }

    func apiListening(port: Int) { api.reach(.success(port)) }
    func apiFailed(_ error: any Error) { api.reach(.failure(error)) }
    func gatewayStarted(_ ports: PilePorts) { started.reach(.success(ports)) }
    /// Why the gateway did not start; also called when its service group ends, which does
    /// nothing once it had started.
    func gatewayFailed(_ error: any Error) {
        api.reach(.failure(error))
        started.reach(.failure(error))
    }

    /// Waits until the API listens; throws why it cannot (or `CancellationError`).
    func waitForAPI() async throws { _ = try await api.wait() }
    /// Waits until the gateway is up; throws why it did not start (or `CancellationError`).
    func waitUntilStarted() async throws { _ = try await started.wait() }

    /// A point start-up reaches once, with its outcome; waiters wake when it is reached or
    /// when their task is cancelled.
    private final class Milestone<Value: Sendable>: Sendable {
        private struct State {
            var outcome: Result<Value, any Error>?
            var waiters: [Int: CheckedContinuation<Value, any Error>] = [:]
            var nextWaiter = 0
        }
        private let state = NIOLockedValueBox(State())

        var value: Value? { state.withLockedValue { try? $0.outcome?.get() } }

        /// Records the outcome; only the first counts.
        func reach(_ outcome: Result<Value, any Error>) {
            let waiters = state.withLockedValue { s -> [CheckedContinuation<Value, any Error>] in
                guard s.outcome == nil else { return [] }
                s.outcome = outcome
                defer { s.waiters = [:] }
                return Array(s.waiters.values)
            }
            for w in waiters { w.resume(with: outcome) }
        }

        func wait() async throws -> Value {
            let id = state.withLockedValue { s in
                defer { s.nextWaiter += 1 }
                return s.nextWaiter
            }
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    let outcome = state.withLockedValue { s -> Result<Value, any Error>? in
                        if let o = s.outcome { return o }
                        if Task.isCancelled { return .failure(CancellationError()) }
                        s.waiters[id] = continuation
                        return nil
                    }
                    if let outcome { continuation.resume(with: outcome) }
                }
            } onCancel: {
                let waiter = state.withLockedValue { $0.waiters.removeValue(forKey: id) }
                waiter?.resume(throwing: CancellationError())
            }
        }
    }
}
