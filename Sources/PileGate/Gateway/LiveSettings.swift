import Atomics
import NIOConcurrencyHelpers
import NIOCore

/// The configuration in force, replaceable while the gateway runs (`Gateway.reload`).
///
/// Code reads it at the moment a setting takes effect — when a connection is accepted, when a
/// pile logs in, when a throttle episode starts or a slow reader is found — so a reload applies
/// from the next such moment without touching what is running. A connection takes the session
/// limits (`PileSessionLimits`) in force when it is accepted and keeps them for its life. One
/// lock, taken per connection or login, never per frame.
public final class LiveSettings: Sendable {
    private struct State {
        var config: GatewayConfiguration
        var sessionLimits: PileSessionLimits
    }

    private let box: NIOLockedValueBox<State>
    private let generationCounter = ManagedAtomic(0)

    init(_ config: GatewayConfiguration) {
        box = NIOLockedValueBox(State(config: config, sessionLimits: PileSessionLimits(config: config)))
    }

    /// The configuration in force now.
    public var current: GatewayConfiguration { box.withLockedValue { $0.config } }

    /// The limits a connection accepted now follows (shared by every connection accepted under
    /// the same configuration).
    var sessionLimits: PileSessionLimits { box.withLockedValue { $0.sessionLimits } }

    /// How many times a reload replaced the configuration.
    public var generation: Int { generationCounter.load(ordering: .relaxed) }

    func replace(_ config: GatewayConfiguration) {
        let limits = PileSessionLimits(config: config)
        box.withLockedValue { $0 = State(config: config, sessionLimits: limits) }
        generationCounter.wrappingIncrement(ordering: .relaxed)
    }
}
