import NIOCore
import YKC

/// Where a simulated pile is in its connection life cycle.
public enum PilePhase: String, Sendable, Hashable {
    /// Created, `start()` not called yet.
    case idle
    /// TCP connect in progress.
    case connecting
    /// Connected, 0x01 sent, waiting for 0x02.
    case awaitingLogin
    /// 0x02 accepted: heartbeats run, commands are answered.
    case loggedIn
    /// Link down, a reconnect is scheduled.
    case waitingToReconnect
    /// Link down and reconnecting is off.
    case disconnected
    /// `stop()` was called; the pile does nothing more.
    case stopped
}

/// Why the pile's last connection ended (or its last connect failed).
public enum PileCloseReason: Sendable, Hashable, CustomStringConvertible {
    /// The platform closed the connection (EOF or reset).
    case peerClosed
    /// More than `maxUnansweredHeartbeats` heartbeats of this gun went unanswered (FW rule).
    case heartbeatTimeout(gun: Int)
    /// No 0x02 within `loginTimeout`.
    case loginTimeout
    /// 0x02 said "rejected".
    case loginRejected
    /// The TCP connect failed.
    case connectFailed(String)
    /// The test or fleet asked for the connection to be dropped (`disconnect()`).
    case requested
    /// A 0x92 reboot was executed (`rebootOnCommand`).
    case reboot
    /// `stop()`.
    case stopped
    /// A channel error.
    case error(String)

    public var description: String {
        switch self {
        case .peerClosed: "peer closed"
        case .heartbeatTimeout(let g): "heartbeat timeout on gun \(g)"
        case .loginTimeout: "login timeout"
        case .loginRejected: "login rejected"
        case .connectFailed(let e): "connect failed: \(e)"
        case .requested: "closed on request"
        case .reboot: "reboot"
        case .stopped: "stopped"
        case .error(let e): "error: \(e)"
        }
    }
}

/// One gun's view in a state snapshot.
public struct GunSnapshot: Sendable, Hashable {
    /// Gun number, 1-based.
    public var gun: Int
    /// Heartbeats (0x03) this gun sent, over all connections.
    public var heartbeatsSent: Int
    /// Heartbeat replies (0x04) received for this gun, over all connections.
    public var heartbeatsAcked: Int
    /// Heartbeats sent since the last reply on the current connection (the FW miss counter).
    public var unansweredHeartbeats: Int
    /// Sequence bytes of the last 0x03 this gun sent.
    public var lastHeartbeatSequence: YKCSequence?
    /// Sequence bytes carried by the last 0x04 for this gun.
    public var lastEchoedSequence: YKCSequence?
    /// The open charging session's trade serial, if the gun is charging.
    public var chargingTradeSerial: TradeSerial?
    /// Energy of the open session (kWh, 4 decimals).
    public var sessionEnergy: YKCDecimal

    public var isCharging: Bool { chargingTradeSerial != nil }
}

/// A point-in-time copy of a pile's observable state, taken on its event loop.
public struct SimulatedPileState: Sendable {
    public var pileID: PileID
    public var phase: PilePhase
    public var isConnected: Bool
    public var isLoggedIn: Bool { phase == .loggedIn }

    /// Result of the current connection's login (nil until 0x02 arrives; reset on each connection).
    public var loginResult: LoginResult?
    /// 0x01 frames sent.
    public var loginAttempts: Int
    public var loginsAccepted: Int
    public var loginsRejected: Int
    public var loginTimeouts: Int
    /// Time from sending 0x01 to receiving 0x02 on the latest login.
    public var lastLoginLatency: TimeAmount?

    /// The tariff from the last 0x0A (or 0x58).
    public var billingModel: BillingModelReply?
    /// 0x09 frames sent (it repeats until 0x0A arrives).
    public var billingModelRequestsSent: Int

    public var guns: [GunSnapshot]

    /// Frames received / sent by type code (empty when `detailedStats` is off).
    public var framesReceived: [UInt8: Int]
    public var framesSent: [UInt8: Int]
    /// Parse errors (garbage, bad CRC, …) seen on received bytes.
    public var parseErrors: Int
    /// Encrypted frames (flag 0x01) from the platform decrypted with `frameCipher`.
    public var framesDecrypted = 0
    /// Encrypted frames the pile could not decrypt (no `frameCipher`, or the wrong one); dropped.
    public var undecryptableFrames = 0

    /// Bills sent and not yet acknowledged, oldest first.
    public var pendingBills: [TradeSerial]
    /// Bills for which a 0x40 with that trade serial arrived.
    public var billsAcked: Set<TradeSerial>
    /// The 0x40 result per acknowledged bill.
    public var billAckResults: [TradeSerial: BillAckResult]
    /// Bills given up after `billMaxSends` sends without an ack.
    public var billsAbandoned: Set<TradeSerial>
    /// How many times each bill (by trade serial) was sent, acknowledged or not.
    public var billSends: [TradeSerial: Int]

    /// Replies (0x32) to pile-initiated starts, by gun, latest last.
    public var startReplies: [StartRequestReply]

    public var connectAttempts: Int
    public var connectionsOpened: Int
    public var connectionsClosed: Int
    public var connectFailures: Int
    public var lastCloseReason: PileCloseReason?
    public var readingPaused: Bool

    /// The gun's snapshot by 1-based number.
    public func gun(_ number: Int) -> GunSnapshot? {
        guard number >= 1 && number <= guns.count else { return nil }
        return guns[number - 1]
    }

    /// Total heartbeat replies over all guns.
    public var heartbeatsAcked: Int { guns.reduce(0) { $0 + $1.heartbeatsAcked } }

    /// Count of frames received with this type code.
    public func received(_ code: UInt8) -> Int { framesReceived[code] ?? 0 }
    /// Count of frames sent with this type code.
    public func sent(_ code: UInt8) -> Int { framesSent[code] ?? 0 }

    /// One line for failure messages.
    public var summary: String {
        "pile \(pileID) phase=\(phase) logins=\(loginsAccepted)/\(loginAttempts) rejected=\(loginsRejected) "
            + "opened=\(connectionsOpened) closed=\(connectionsClosed) connectFailures=\(connectFailures) "
            + "lastClose=\(lastCloseReason.map { "\($0)" } ?? "-") hbAcked=\(guns.map(\.heartbeatsAcked)) "
            + "billsPending=\(pendingBills.count) billsAcked=\(billsAcked.count)"
    }
}

/// Errors from a simulated pile's async API.
public enum SimulatedPileError: Error, Sendable, CustomStringConvertible {
    /// A wait ran out of time; the text says what was awaited and the pile's state.
    case timeout(String)
    /// The pile has no open connection to send on.
    case notConnected
    /// The platform rejected the login (0x02 result 1).
    case loginRejected
    /// The pile was stopped while waiting.
    case stopped
    /// The first connect failed.
    case connectFailed(String)
    /// A gun number outside 1…gunCount.
    case invalidGun(Int)
    /// A bill with this trade serial is already pending.
    case duplicateBill(TradeSerial)

    public var description: String {
        switch self {
        case .timeout(let what): "timed out waiting for \(what)"
        case .notConnected: "the pile is not connected"
        case .loginRejected: "login rejected"
        case .stopped: "the pile was stopped"
        case .connectFailed(let e): "connect failed: \(e)"
        case .invalidGun(let g): "no gun \(g)"
        case .duplicateBill(let t): "bill \(t) is already pending"
        }
    }
}
