import NIOCore

/// The per-connection limits every pile session follows, built once per gateway from its
/// configuration and shared by reference: a session holds one pointer to it, not its own copy
/// of eight settings (19,000 idle piles, docs/BENCHMARKS.md "Memory per pile").
final class PileSessionLimits: Sendable {
    let maxMalformed: Int
    let maxRefused: Int
    let maxThrottleEpisodes: Int
    let throttleWindow: TimeAmount
    /// The least a throttle episode pauses reading.
    let throttlePause: TimeAmount
    let loginTimeout: TimeAmount
    let livenessTimeout: TimeAmount
    /// Commands that may wait for one pile's reply at once.
    let maxCommands: Int
    /// The configured frame and byte rates (a pile with its own gets its own `PileRates` at login).
    let rates: PileRates

    init(
        maxMalformed: Int, maxRefused: Int, maxThrottleEpisodes: Int, throttleWindow: TimeAmount,
        throttlePause: TimeAmount = .seconds(1), loginTimeout: TimeAmount = .seconds(10),
        livenessTimeout: TimeAmount = .seconds(35), maxCommands: Int = 32,
        rates: PileRates = PileRates(frameRate: 50, frameBurst: 200, byteRate: 16_384, byteBurst: 65_536)
    ) {
        self.maxMalformed = maxMalformed
        self.maxRefused = maxRefused
        self.maxThrottleEpisodes = maxThrottleEpisodes
        self.throttleWindow = throttleWindow
        self.throttlePause = throttlePause
        self.loginTimeout = loginTimeout
        self.livenessTimeout = livenessTimeout
        self.maxCommands = maxCommands
        self.rates = rates
    }

    convenience init(config c: GatewayConfiguration) {
        self.init(
            maxMalformed: c.maxMalformedFrames, maxRefused: c.maxRefusedFrames, maxThrottleEpisodes: c.maxThrottleEpisodes,
            throttleWindow: .fromSeconds(c.throttleWindow), throttlePause: .fromSeconds(c.throttlePause),
            loginTimeout: .fromSeconds(c.loginTimeout), livenessTimeout: .fromSeconds(c.livenessTimeout),
            maxCommands: c.maxCommandsPerPile, rates: PileRates(config: c))
    }
}
