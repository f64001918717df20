import NIOCore

/// A pile that charges by itself over and over, like a busy public charger: while logged in, gun 1
/// starts a session (as if a card was swiped), sends a charging 0x13 every
/// `chargingRealtimeInterval`, ends after `sessionLength` (rounded up to that interval) with a bill
/// (0x3B, re-sent until 0x40), rests `pause`, and starts again. The first session of each login
/// starts after a random part of one cycle, so a fleet's sessions do not start in lock-step.
public struct ChargingCycle: Sendable, Hashable {
    public var sessionLength: TimeAmount
    public var pause: TimeAmount

    public init(sessionLength: TimeAmount, pause: TimeAmount) {
        self.sessionLength = sessionLength
        self.pause = pause
    }

    /// Whether the pile with run index `runIndex` is one of the `fraction` (0…1) of a fleet that
    /// charge: exactly ⌊n·fraction⌋ of any n consecutive indices from 0, spread evenly.
    public static func isCharging(runIndex: Int, fraction: Double) -> Bool {
        guard fraction > 0 else { return false }
        guard fraction < 1 else { return true }
        let i = Double(runIndex)
        return ((i + 1) * fraction).rounded(.down) > (i * fraction).rounded(.down)
    }
}
