import NIOCore
import YKC

/// The pile's firmware: all per-pile state and behaviour, confined to one event loop.
///
/// It outlives its connections (a reconnect makes a new channel on the same loop and the same
/// core), so bills, sessions and counters survive a dropped link the way they survive in a real
/// pile's flash. Nothing here is locked: every method runs on `eventLoop`, reached from other
/// threads only through `NIOLoopBound`/`NIOLoopBoundBox`. Timers re-arm themselves on the loop's
/// `PileTimerWheel` instead of a Task per pile, so 19,000 piles cost a few small objects each.
final class PileCore {
    let config: SimulatedPileConfig
    /// Where the next connect goes: the pile's target, or after a reconnect with
    /// `failoverTargets` another of those.
    var target: SocketAddress
    let eventLoop: any EventLoop
    /// The timers of every pile on this loop (`PileTimerWheel`: they must not starve its I/O).
    let timers: PileTimerWheel

    // Connection
    var phase: PilePhase = .idle
    var context: ChannelHandlerContext?
    /// Bumped for every connect, so events of an old channel are ignored.
    var connectionID = 0
    var sequencer: FrameSequencer
    var loggedInThisConnection = false
    var consecutiveFailures = 0
    var pendingCloseReason: PileCloseReason?
    var readingPaused = false
    var guns: [GunSim]

    // Timers
    var loginTimer: PileTimer?
    var heartbeatTimer: PileTimer?
    var billingModelTimer: PileTimer?
    var realtimeTimer: PileTimer?
    var reconnectTimer: PileTimer?
    /// The connect deadline (`config.connectTimeout`), on the wheel rather than NIO's connect
    /// timeout, so a loop that is behind sees a connect the kernel finished before it gives up
    /// on it; `connectingChannel` is the channel it closes.
    var connectTimer: PileTimer?
    var connectingChannel: (any Channel)?
    var connectTimedOut = false
    var rebootTimer: PileTimer?
    /// The next session of `config.chargingCycle`.
    var chargingCycleTimer: PileTimer?

    // Login / billing model
    var loginSentAt = NIODeadline.now()
    var loginResult: LoginResult?
    var loginAttempts = 0
    var loginsAccepted = 0
    var loginsRejected = 0
    var loginTimeouts = 0
    var lastLoginLatency: TimeAmount?
    var billingModel: BillingModelReply?
    var billingModelReceivedThisConnection = false
    var billingModelRequestsSent = 0

    // Bills
    var bills: BillQueue
    /// Counter for the trade serials of simulated bills (unique per pile and second).
    var billCounter = 0
    var offlineCards: Set<BinaryID> = []
    var startReplies: [StartRequestReply] = []

    // Observation
    var framesReceived: [UInt8: Int] = [:]
    var framesSent: [UInt8: Int] = [:]
    var parseErrors = 0
    var framesDecrypted = 0
    var undecryptableFrames = 0
    var connectAttempts = 0
    var connectionsOpened = 0
    var connectionsClosed = 0
    var connectFailures = 0
    var lastCloseReason: PileCloseReason?
    var inbox: [YKCFrame] = []
    var history: [YKCFrame] = []
    var frameWaiters: [FrameWaiter] = []
    var stateWaiters: [StateWaiter] = []
    var nextWaiterID = 0

    struct FrameWaiter {
        var id: Int
        var code: UInt8
        var promise: EventLoopPromise<YKCFrame>
        var timer: PileTimer
    }

    struct StateWaiter {
        var id: Int
        var predicate: @Sendable (SimulatedPileState) -> Bool
        var promise: EventLoopPromise<SimulatedPileState>
        var timer: PileTimer
    }

    init(config: SimulatedPileConfig, target: SocketAddress, eventLoop: any EventLoop, timers: PileTimerWheel? = nil) {
        self.config = config
        self.target = target
        self.eventLoop = eventLoop
        self.timers = timers ?? PileTimerWheel(eventLoop: eventLoop)
        self.sequencer = FrameSequencer(
            scope: config.sequenceScope, byteOrder: config.sequenceByteOrder, gunCount: config.gunCount)
        self.bills = BillQueue(maxSends: config.billMaxSends, countsSends: config.detailedStats)
        self.guns = (1...config.gunCount).map { GunSim(number: GunNumber(number: $0) ?? GunNumber(raw: 0)) }
    }

    var counters: SimulatorCounters? { config.counters }
    var pileID: PileID { config.pileID }

    /// Runs `body` on the loop after `delay`, on the loop's timer wheel.
    @discardableResult
    func after(_ delay: TimeAmount, _ body: @escaping () -> Void) -> PileTimer {
        timers.schedule(in: delay, body)
    }
}
