import Foundation
import NIOCore
import NIOPosix
import YKC
import YKCCipher

/// One gun's firmware state.
struct GunSim {
    let number: GunNumber
    /// FW keeps one sequence counter per gun, reset on every new socket (docs/ykc/PROTOCOL-FACTS.md §1.2).
    var sequence: UInt16 = 0
    var heartbeatsSent = 0
    var heartbeatsAcked = 0
    /// FW's miss counter: heartbeats sent since the last 0x04 for this gun.
    var unanswered = 0
    var lastHeartbeatSequence: YKCSequence?
    var lastEchoedSequence: YKCSequence?
    var session: ChargingSession?
    /// The gun's energy meter, 0.0001 kWh; a bill carries its start and end readings.
    var meterRaw: UInt64 = 10_000_000
    /// Card of a pending pile-initiated (0x31) start, used when 0x32 authorises it.
    var pendingCard: BinaryID?
    var cardStartWaiter: (promise: EventLoopPromise<StartRequestReply>, timer: Scheduled<Void>)?
}

/// An open charging session on one gun.
struct ChargingSession {
    var tradeSerial: TradeSerial
    var origin: TransactionOrigin
    var physicalCard: BinaryID
    var startTime: CP56Time2a
    var startedAt: NIODeadline
    var meterStartRaw: UInt64
    /// Energy so far, 0.0001 kWh.
    var energyRaw: UInt64 = 0
    var timer: Scheduled<Void>?
}

/// A bill (0x3B) waiting for its 0x40.
struct PendingBill {
    var record: TransactionRecord
    var gunIndex: Int
    var sends = 0
    var timer: Scheduled<Void>?
    /// When the bill first went out, for the 0x3B → 0x40 latency.
    var firstSentAt: NIODeadline?
}

/// The pile's firmware: all per-pile state and behaviour, confined to one event loop.
///
/// It outlives its connections (a reconnect makes a new channel on the same loop and the same
/// core), so bills, sessions and counters survive a dropped link the way they survive in a real
/// pile's flash. Nothing here is locked: every method runs on `eventLoop`, reached from other
/// threads only through `NIOLoopBound`/`NIOLoopBoundBox`. Timers re-arm themselves with
/// `scheduleTask` instead of a Task per pile, so 19,000 piles cost a few small objects each.
final class PileCore {
    let config: SimulatedPileConfig
    let target: SocketAddress
    let eventLoop: any EventLoop

    // Connection
    var phase: PilePhase = .idle
    var context: ChannelHandlerContext?
    /// Bumped for every connect, so events of an old channel are ignored.
    var connectionID = 0
    var connectionSequence: UInt16 = 0
    var loggedInThisConnection = false
    var consecutiveFailures = 0
    var pendingCloseReason: PileCloseReason?
    var readingPaused = false
    var guns: [GunSim]

    // Timers
    var loginTimer: Scheduled<Void>?
    var heartbeatTimer: Scheduled<Void>?
    var billingModelTimer: Scheduled<Void>?
    var realtimeTimer: Scheduled<Void>?
    var reconnectTimer: Scheduled<Void>?
    var rebootTimer: Scheduled<Void>?

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
    var pendingBills: [TradeSerial: PendingBill] = [:]
    var billOrder: [TradeSerial] = []
    var billsAcked: Set<TradeSerial> = []
    var billAckResults: [TradeSerial: BillAckResult] = [:]
    var billsAbandoned: Set<TradeSerial> = []
    var billSends: [TradeSerial: Int] = [:]
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
        var timer: Scheduled<Void>
    }

    struct StateWaiter {
        var id: Int
        var predicate: @Sendable (SimulatedPileState) -> Bool
        var promise: EventLoopPromise<SimulatedPileState>
        var timer: Scheduled<Void>
    }

    init(config: SimulatedPileConfig, target: SocketAddress, eventLoop: any EventLoop) {
        self.config = config
        self.target = target
        self.eventLoop = eventLoop
        self.guns = (1...config.gunCount).map { GunSim(number: GunNumber(number: $0) ?? GunNumber(raw: 0)) }
    }

    var counters: SimulatorCounters? { config.counters }
    var pileID: PileID { config.pileID }

    /// Runs `body` on the loop after `delay`; the loop-isolated API lets it touch this object.
    @discardableResult
    func after(_ delay: TimeAmount, _ body: @escaping () -> Void) -> Scheduled<Void> {
        eventLoop.assumeIsolated().scheduleTask(in: delay, body)
    }

    // MARK: - Connection life cycle

    func start() {
        guard phase == .idle || phase == .disconnected else { return }
        connect()
    }

    func connect() {
        guard phase != .stopped else { return }
        reconnectTimer = nil
        phase = .connecting
        connectionID &+= 1
        let id = connectionID
        connectAttempts += 1
        counters?.connectAttempts.wrappingIncrement(ordering: .relaxed)
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        var bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(config.connectTimeout)
            .channelOption(
                ChannelOptions.recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 8192)
            )
            .channelInitializer { channel in
                PileCore.initializePipeline(channel, core: bound, connectionID: id)
            }
        if let source = config.sourceAddress { bootstrap = bootstrap.bind(to: source) }
        bootstrap.connect(to: target).assumeIsolated().whenComplete { result in
            self.connectCompleted(result, connectionID: id)
        }
        notify()
    }

    /// The pipeline: frame decoder, then the handler that feeds this core. A static function so
    /// the `@Sendable` initializer captures only Sendable values.
    static func initializePipeline(
        _ channel: any Channel, core: NIOLoopBound<PileCore>, connectionID: Int
    ) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(ByteToMessageHandler(YKCFrameDecoder(), maximumBufferSize: 16 * 1024))
            try sync.addHandler(PileChannelHandler(core: core.value, connectionID: connectionID))
        }
    }

    func connectCompleted(_ result: Result<any Channel, any Error>, connectionID id: Int) {
        switch result {
        case .success(let channel):
            if id != connectionID || phase == .stopped {
                channel.close(promise: nil)
            }
        case .failure(let error):
            guard id == connectionID, phase == .connecting else { return }
            connectFailures += 1
            counters?.connectFailures.wrappingIncrement(ordering: .relaxed)
            lastCloseReason = .connectFailed("\(error)")
            if config.reconnect.enabled {
                let delay = config.reconnect.delay(afterFailures: consecutiveFailures)
                consecutiveFailures += 1
                scheduleReconnect(after: delay)
            } else {
                phase = .disconnected
            }
            notify()
        }
    }

    func connectionActive(_ context: ChannelHandlerContext, connectionID id: Int) {
        guard id == connectionID, phase == .connecting else {
            context.close(promise: nil)
            return
        }
        self.context = context
        phase = .awaitingLogin
        connectionsOpened += 1
        counters?.connected.wrappingIncrement(ordering: .relaxed)
        loggedInThisConnection = false
        billingModelReceivedThisConnection = false
        connectionSequence = 0
        for g in guns.indices {
            guns[g].sequence = 0
            guns[g].unanswered = 0
        }
        if readingPaused {
            try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
        }
        sendLogin()
        loginTimer = after(config.loginTimeout) { self.loginTimedOut(connectionID: id) }
        notify()
    }

    func sendLogin() {
        loginResult = nil
        loginAttempts += 1
        counters?.loginsSent.wrappingIncrement(ordering: .relaxed)
        loginSentAt = .now()
        let login = Login(
            pileId: pileID, pileType: config.pileType, gunCount: UInt8(guns.count),
            protocolVersion: config.protocolVersion, firmwareVersion: config.firmwareVersion,
            networkType: config.networkType, sim: config.sim, carrier: config.carrier)
        send(login, nextSequence(gun: 0))
    }

    func loginTimedOut(connectionID id: Int) {
        guard id == connectionID, phase == .awaitingLogin else { return }
        loginTimeouts += 1
        counters?.loginTimeouts.wrappingIncrement(ordering: .relaxed)
        close(.loginTimeout)
    }

    /// Closes the current connection, remembering why; the rest happens in `connectionInactive`.
    func close(_ reason: PileCloseReason) {
        guard let context else { return }
        if pendingCloseReason == nil { pendingCloseReason = reason }
        context.close(promise: nil)
    }

    func connectionInactive(connectionID id: Int) {
        guard id == connectionID, context != nil else { return }
        context = nil
        cancelConnectionTimers()
        connectionsClosed += 1
        counters?.connected.wrappingDecrement(ordering: .relaxed)
        counters?.closes.wrappingIncrement(ordering: .relaxed)
        if phase == .loggedIn { counters?.loggedIn.wrappingDecrement(ordering: .relaxed) }
        let reason = pendingCloseReason ?? .peerClosed
        pendingCloseReason = nil
        lastCloseReason = reason
        if phase == .stopped {
            notify()
            return
        }
        guard config.reconnect.enabled else {
            phase = .disconnected
            notify()
            return
        }
        let delay: TimeAmount
        switch reason {
        case .loginTimeout, .loginRejected:
            consecutiveFailures += 1
            delay = ReconnectPolicy.jittered(Double(config.loginRetryDelay.nanoseconds), config.reconnect.jitter)
        default:
            if loggedInThisConnection {
                consecutiveFailures = 0
                delay = config.reconnect.delay(afterFailures: 0)
            } else {
                delay = config.reconnect.delay(afterFailures: consecutiveFailures)
                consecutiveFailures += 1
            }
        }
        scheduleReconnect(after: delay)
        notify()
    }

    func scheduleReconnect(after delay: TimeAmount) {
        phase = .waitingToReconnect
        counters?.reconnects.wrappingIncrement(ordering: .relaxed)
        reconnectTimer = after(delay) {
            self.reconnectTimer = nil
            if self.phase == .waitingToReconnect { self.connect() }
        }
    }

    func cancelConnectionTimers() {
        loginTimer?.cancel()
        loginTimer = nil
        heartbeatTimer?.cancel()
        heartbeatTimer = nil
        billingModelTimer?.cancel()
        billingModelTimer = nil
        realtimeTimer?.cancel()
        realtimeTimer = nil
        rebootTimer?.cancel()
        rebootTimer = nil
        for serial in billOrder {
            pendingBills[serial]?.timer?.cancel()
            pendingBills[serial]?.timer = nil
        }
        for g in guns.indices {
            if let waiter = guns[g].cardStartWaiter {
                waiter.timer.cancel()
                waiter.promise.fail(SimulatedPileError.notConnected)
                guns[g].cardStartWaiter = nil
            }
        }
    }

    /// Stops the pile for good: no reconnect, no timers, waiters fail. Completes when the link is closed.
    func stop() -> EventLoopFuture<Void> {
        let closed = context?.channel.closeFuture
        phase = .stopped
        reconnectTimer?.cancel()
        reconnectTimer = nil
        for g in guns.indices {
            guns[g].session?.timer?.cancel()
            guns[g].session?.timer = nil
        }
        close(.stopped)
        if context == nil { cancelConnectionTimers() }
        notify()
        for w in stateWaiters {
            w.timer.cancel()
            w.promise.fail(SimulatedPileError.stopped)
        }
        stateWaiters.removeAll()
        for w in frameWaiters {
            w.timer.cancel()
            w.promise.fail(SimulatedPileError.stopped)
        }
        frameWaiters.removeAll()
        return closed ?? eventLoop.makeSucceededVoidFuture()
    }

    /// Drops the current connection; the reconnect policy decides what happens next.
    func disconnect() -> EventLoopFuture<Void> {
        guard let context else { return eventLoop.makeSucceededVoidFuture() }
        let closed = context.channel.closeFuture
        close(.requested)
        return closed
    }

    func setReading(_ enabled: Bool) {
        readingPaused = !enabled
        guard let context else { return }
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: enabled)
        if enabled { context.read() }
        notify()
    }

    // MARK: - Sending

    func nextSequence(gun index: Int) -> YKCSequence {
        let value: UInt16
        switch config.sequenceScope {
        case .perConnection:
            value = connectionSequence
            connectionSequence &+= 1
        case .perGun:
            let g = guns.indices.contains(index) ? index : 0
            value = guns[g].sequence
            guns[g].sequence &+= 1
        }
        switch config.sequenceByteOrder {
        case .little: return YKCSequence(counter: value)
        case .big: return YKCSequence(UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value))
        }
    }

    /// Writes one typed frame straight into a fresh buffer; false when there is no connection.
    @discardableResult
    func send<M: YKCMessageBody>(_ message: M, _ sequence: YKCSequence) -> Bool {
        guard let context else { return false }
        var buffer = context.channel.allocator.buffer(capacity: (M.bodyLength ?? 120) + 8)
        if config.frameCipher != nil {
            sealed(message.frame(sequence: sequence)).write(into: &buffer)
        } else {
            message.writeFrame(sequence: sequence, into: &buffer)
        }
        context.writeAndFlush(NIOAny(buffer), promise: nil)
        noteSent(M.code)
        return true
    }

    func noteSent(_ code: UInt8) {
        counters?.framesSent.wrappingIncrement(ordering: .relaxed)
        if config.detailedStats { framesSent[code, default: 0] += 1 }
    }

    /// `frame` encrypted with `frameCipher` when one is configured; otherwise (or when the body is
    /// too long to encrypt) unchanged.
    func sealed(_ frame: YKCFrame) -> YKCFrame {
        guard let cipher = config.frameCipher, frame.encryption == 0 else { return frame }
        return (try? cipher.encrypt(frame: frame)) ?? frame
    }

    /// Writes a caller-built frame (test API).
    func sendFrame(_ frame: YKCFrame) -> EventLoopFuture<Void> {
        guard let context else { return eventLoop.makeFailedFuture(SimulatedPileError.notConnected) }
        var buffer = context.channel.allocator.buffer(capacity: frame.body.readableBytes + 8)
        frame.write(into: &buffer)
        let promise = eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(buffer), promise: promise)
        noteSent(frame.code)
        return promise.futureResult
    }

    /// Writes arbitrary bytes (garbage, partial frames) for hostile-client tests.
    func rawSend(_ bytes: [UInt8]) -> EventLoopFuture<Void> {
        guard let context else { return eventLoop.makeFailedFuture(SimulatedPileError.notConnected) }
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        let promise = eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(buffer), promise: promise)
        return promise.futureResult
    }

    // MARK: - Receiving

    func parseError(_ error: YKCFrameError, connectionID id: Int) {
        guard id == connectionID else { return }
        parseErrors += 1
        counters?.parseErrors.wrappingIncrement(ordering: .relaxed)
    }

    func channelError(_ error: any Error, connectionID id: Int) {
        guard id == connectionID else { return }
        // A platform that closes with bytes unread by it sends a reset instead of a FIN: either way
        // the peer closed (PileCloseReason.peerClosed), as firmware sees it.
        if let io = error as? IOError, io.errnoCode == ECONNRESET || io.errnoCode == EPIPE {
            close(.peerClosed)
        } else {
            close(.error("\(error)"))
        }
    }

    func received(_ frame: YKCFrame, connectionID id: Int) {
        guard id == connectionID else { return }
        var frame = frame
        if frame.encryption == FrameCipher.encryptedFlag {
            // A pile reads an encrypted frame only with its key; anything else is dropped.
            guard let cipher = config.frameCipher, let plain = try? cipher.decrypt(frame: frame) else {
                undecryptableFrames += 1
                notify()
                return
            }
            framesDecrypted += 1
            frame = plain
        }
        counters?.framesReceived.wrappingIncrement(ordering: .relaxed)
        if config.detailedStats { framesReceived[frame.code, default: 0] += 1 }
        record(frame)
        switch frame.code {
        case 0x02: handleLoginReply(frame, connectionID: id)
        case 0x04: handleHeartbeatReply(frame)
        case 0x0A: handleBillingModelReply(frame)
        case 0x32: handleStartRequestReply(frame)
        case 0x40: handleBillAck(frame)
        default:
            // FW ignores platform requests until it is logged in (docs/ykc/PROTOCOL-FACTS.md §5.1).
            if phase == .loggedIn && config.autoAnswerCommands && !config.ignoredCommandCodes.contains(frame.code) {
                answerCommand(frame)
            }
        }
        notify()
    }

    func handleLoginReply(_ frame: YKCFrame, connectionID id: Int) {
        guard phase == .awaitingLogin else { return }
        var body = frame.body
        guard let reply = try? LoginReply(decoding: &body) else { return }
        loginTimer?.cancel()
        loginTimer = nil
        let latency = NIODeadline.now() - loginSentAt
        lastLoginLatency = latency
        counters?.loginLatency.record(latency)
        loginResult = reply.result
        guard reply.result == .accepted else {
            loginsRejected += 1
            counters?.loginsRejected.wrappingIncrement(ordering: .relaxed)
            close(.loginRejected)
            return
        }
        loginsAccepted += 1
        counters?.loginsAccepted.wrappingIncrement(ordering: .relaxed)
        counters?.loggedIn.wrappingIncrement(ordering: .relaxed)
        phase = .loggedIn
        loggedInThisConnection = true
        consecutiveFailures = 0
        heartbeatTimer = after(config.heartbeatInitialDelay) { self.heartbeatTick(connectionID: id) }
        if config.requestBillingModel { sendBillingModelRequest(connectionID: id) }
        if config.realtimeOnLogin {
            for g in guns.indices { sendRealtime(gun: g) }
        }
        if let interval = config.realtimeInterval {
            realtimeTimer = after(interval) { self.realtimeTick(connectionID: id) }
        }
        // Bills stored while offline go up right after login (docs/ykc/PROTOCOL-FACTS.md §5.1).
        for serial in billOrder { sendBill(serial) }
        refillBills()
    }

    func heartbeatTick(connectionID id: Int) {
        guard id == connectionID, phase == .loggedIn else { return }
        let range = config.heartbeatScope == .perGun ? guns.indices : 0..<1
        for g in range where guns[g].unanswered > config.maxUnansweredHeartbeats {
            counters?.heartbeatTimeouts.wrappingIncrement(ordering: .relaxed)
            close(.heartbeatTimeout(gun: g + 1))
            return
        }
        for g in range {
            let sequence = nextSequence(gun: g)
            send(Heartbeat(pileId: pileID, gun: guns[g].number, gunState: .normal), sequence)
            guns[g].heartbeatsSent += 1
            guns[g].unanswered += 1
            guns[g].lastHeartbeatSequence = sequence
            counters?.heartbeatsSent.wrappingIncrement(ordering: .relaxed)
        }
        heartbeatTimer = after(config.heartbeatInterval) { self.heartbeatTick(connectionID: id) }
        notify()
    }

    func handleHeartbeatReply(_ frame: YKCFrame) {
        var body = frame.body
        guard let reply = try? HeartbeatReply(decoding: &body), let g = gunIndex(reply.gun) else { return }
        guns[g].heartbeatsAcked += 1
        guns[g].unanswered = 0
        guns[g].lastEchoedSequence = frame.sequence
        counters?.heartbeatsAcked.wrappingIncrement(ordering: .relaxed)
    }

    func sendBillingModelRequest(connectionID id: Int) {
        guard id == connectionID, phase == .loggedIn, !billingModelReceivedThisConnection else { return }
        send(BillingModelRequest(pileId: pileID), nextSequence(gun: 0))
        billingModelRequestsSent += 1
        billingModelTimer = after(config.billingModelRetryInterval) {
            self.sendBillingModelRequest(connectionID: id)
        }
    }

    func handleBillingModelReply(_ frame: YKCFrame) {
        var body = frame.body
        guard let reply = try? BillingModelReply(decoding: &body) else { return }
        billingModel = reply
        billingModelReceivedThisConnection = true
        billingModelTimer?.cancel()
        billingModelTimer = nil
        counters?.billingModelsReceived.wrappingIncrement(ordering: .relaxed)
    }

    func realtimeTick(connectionID id: Int) {
        guard id == connectionID, phase == .loggedIn, let interval = config.realtimeInterval else { return }
        for g in guns.indices where guns[g].session == nil { sendRealtime(gun: g) }
        realtimeTimer = after(interval) { self.realtimeTick(connectionID: id) }
    }

    func gunIndex(_ gun: GunNumber) -> Int? {
        let i = gun.number - 1
        return guns.indices.contains(i) ? i : nil
    }

    // MARK: - Platform commands (docs/ykc/PROTOCOL-FACTS.md §5.7)

    func answerCommand(_ frame: YKCFrame) {
        let seq = frame.sequence
        var answered = true
        switch YKCMessage.decode(frame) {
        case .readRealtimeData(let m):
            if let g = gunIndex(m.gun) { sendRealtime(gun: g, sequence: seq) } else { answered = false }
        case .remoteStart(let m):
            let (result, reason, g) = checkStart(pileId: m.pileId, gun: m.gun)
            send(RemoteStartReply(tradeSerial: m.tradeSerial, pileId: pileID, gun: m.gun, result: result, failureReason: reason), seq)
            if let g { beginSession(gun: g, tradeSerial: m.tradeSerial, origin: .app, card: m.physicalCardNumber) }
        case .remoteParallelStart(let m):
            let (result, reason, g) = checkStart(pileId: m.pileId, gun: m.gun)
            send(
                RemoteParallelStartReply(
                    tradeSerial: m.tradeSerial, pileId: pileID, gun: m.gun, result: result, failureReason: reason,
                    gunRole: .main, parallelSerial: m.parallelSerial), seq)
            if let g { beginSession(gun: g, tradeSerial: m.tradeSerial, origin: .app, card: m.physicalCardNumber) }
        case .remoteStop(let m):
            let g = gunIndex(m.gun)
            if m.pileId != pileID {
                send(RemoteStopReply(pileId: pileID, gun: m.gun, result: .failed, failureReason: .pileIdMismatch), seq)
            } else if let g, guns[g].session != nil {
                send(RemoteStopReply(pileId: pileID, gun: m.gun, result: .stopped, failureReason: .noReason), seq)
                endSession(gun: g, reason: .appRemoteStop)
            } else {
                send(RemoteStopReply(pileId: pileID, gun: m.gun, result: .failed, failureReason: .gunNotCharging), seq)
            }
        case .balanceUpdate(let m):
            send(BalanceUpdateReply(pileId: pileID, physicalCardNumber: m.physicalCardNumber, result: .updated), seq)
        case .offlineCardSync(let m):
            for card in m.cards { offlineCards.insert(card.physicalCardNumber) }
            send(OfflineCardSyncReply(pileId: pileID, result: .succeeded, reason: .noReason), seq)
        case .offlineCardClear(let m):
            for card in m.cards { offlineCards.remove(card.physicalCardNumber) }
            let results = m.cards.map {
                OfflineCardClearReply.ClearResult(physicalCardNumber: $0.physicalCardNumber, cleared: .succeeded, reason: 0)
            }
            send(OfflineCardClearReply(pileId: pileID, results: results), seq)
        case .offlineCardQuery(let m):
            let results = m.cards.map {
                OfflineCardQueryReply.QueryResult(
                    physicalCardNumber: $0.physicalCardNumber,
                    presence: offlineCards.contains($0.physicalCardNumber) ? .present : .absent)
            }
            send(OfflineCardQueryReply(pileId: pileID, results: results), seq)
        case .workParams:
            send(WorkParamsReply(pileId: pileID, result: .succeeded), seq)
        case .timeSync(let m):
            send(TimeSyncReply(pileId: pileID, time: m.time), seq)
        case .billingModelSet(let m):
            billingModel = BillingModelReply(
                pileId: pileID, billingModel: m.billingModel, sharpEnergyPrice: m.sharpEnergyPrice,
                sharpServiceFee: m.sharpServiceFee, peakEnergyPrice: m.peakEnergyPrice, peakServiceFee: m.peakServiceFee,
                flatEnergyPrice: m.flatEnergyPrice, flatServiceFee: m.flatServiceFee,
                valleyEnergyPrice: m.valleyEnergyPrice, valleyServiceFee: m.valleyServiceFee,
                lossRatio: m.lossRatio, periods: m.periods)
            send(BillingModelSetReply(pileId: pileID, result: .succeeded), seq)
        case .groundLockCommand(let m):
            send(GroundLockReply(pileId: pileID, gun: m.gun, result: .succeeded, reserved: HexBytes(zeros: 4)), seq)
        case .reboot(let m):
            send(RebootReply(pileId: pileID, result: .succeeded), seq)
            if config.rebootOnCommand && m.when == .immediately {
                // Give the reply a moment to leave before the "reboot" drops the link.
                rebootTimer = after(.milliseconds(20)) { self.close(.reboot) }
            }
        case .firmwareUpdate:
            send(FirmwareUpdateReply(pileId: pileID, status: .succeeded), seq)
        case .qrCodePrefix:
            // 0xF1 result polarity is disputed (docs/ykc/PROTOCOL-FACTS.md §7.9); FW, the pile-side source, uses 0 = success.
            send(QRCodePrefixReply(pileId: pileID, result: 0), seq)
        default:
            answered = false
        }
        if answered { counters?.commandsAnswered.wrappingIncrement(ordering: .relaxed) }
    }

    /// Whether a start on `gun` can go ahead: the 0x33/0xA3 result and reason, and the gun index.
    func checkStart(pileId: PileID, gun: GunNumber) -> (StartResult, StartFailureReason, Int?) {
        guard pileId == pileID else { return (.failed, .pileIdMismatch, nil) }
        guard let g = gunIndex(gun) else { return (.failed, .deviceFault, nil) }
        guard guns[g].session == nil else { return (.failed, .gunAlreadyCharging, nil) }
        return (.started, .noReason, g)
    }

    // MARK: - Charging sessions

    func beginSession(gun g: Int, tradeSerial: TradeSerial, origin: TransactionOrigin, card: BinaryID) {
        guard guns.indices.contains(g), guns[g].session == nil, phase != .stopped else { return }
        guns[g].session = ChargingSession(
            tradeSerial: tradeSerial, origin: origin, physicalCard: card, startTime: CP56Time2a(date: Date()),
            startedAt: .now(), meterStartRaw: guns[g].meterRaw)
        // SPEC: success must be followed by a 0x13 with status "charging".
        sendRealtime(gun: g)
        guns[g].session?.timer = after(config.chargingRealtimeInterval) {
            self.chargingTick(gun: g, tradeSerial: tradeSerial)
        }
    }

    func chargingTick(gun g: Int, tradeSerial: TradeSerial) {
        guard guns[g].session?.tradeSerial == tradeSerial, let session = guns[g].session else { return }
        let seconds = Double(config.chargingRealtimeInterval.nanoseconds) / 1e9
        let added = UInt64(max(0, config.chargingPowerKW * seconds / 3600 * 10_000))
        guns[g].session?.energyRaw = session.energyRaw + added
        guns[g].meterRaw += added
        if phase == .loggedIn { sendRealtime(gun: g) }
        if let duration = config.chargingDuration, NIODeadline.now() - session.startedAt >= duration {
            endSession(gun: g, reason: .socFull)
            return
        }
        guns[g].session?.timer = after(config.chargingRealtimeInterval) {
            self.chargingTick(gun: g, tradeSerial: tradeSerial)
        }
    }

    /// Ends the gun's session: an idle 0x13, then the bill (0x3B), retried until 0x40.
    @discardableResult
    func endSession(gun g: Int, reason: StopReason) -> TradeSerial? {
        guard guns.indices.contains(g), let session = guns[g].session else { return nil }
        session.timer?.cancel()
        guns[g].session = nil
        sendRealtime(gun: g)
        let record = TransactionRecord.simulated(
            pileID: pileID, gun: guns[g].number, tradeSerial: session.tradeSerial,
            energy: YKCDecimal(units: Int64(session.energyRaw), scale: 4),
            pricePerKWh: totalFlatPrice(), startTime: session.startTime, endTime: CP56Time2a(date: Date()),
            meterStart: YKCDecimal(units: Int64(session.meterStartRaw), scale: 4),
            origin: session.origin, stopReason: reason, physicalCard: session.physicalCard)
        try? enqueueBill(record)
        return session.tradeSerial
    }

    /// Energy + service price of the flat period from the billing model (1 yuan/kWh without one).
    func totalFlatPrice() -> YKCDecimal {
        guard let m = billingModel,
            let e = m.flatEnergyPrice.rescaled(to: 5), let s = m.flatServiceFee.rescaled(to: 5)
        else { return YKCDecimal(units: 100_000, scale: 5) }
        return YKCDecimal(units: e + s, scale: 5)
    }

    func realtime(gun g: Int) -> RealtimeData {
        let zeroTemp = YKCDecimal(raw: 0, scale: 0, offset: -50)
        guard let s = guns[g].session else {
            return RealtimeData(
                tradeSerial: .zero, pileId: pileID, gun: guns[g].number, status: .idle, gunHolstered: .yes,
                gunPlugged: .no, outputVoltage: YKCDecimal(units: 0, scale: 1),
                outputCurrent: YKCDecimal(units: 0, scale: 1), gunTemperature: zeroTemp, gunCableCode: .zero,
                soc: 0, maxBatteryTemperature: zeroTemp, chargingMinutes: 0, remainingMinutes: 0,
                energy: YKCDecimal(units: 0, scale: 4), lossAdjustedEnergy: YKCDecimal(units: 0, scale: 4),
                amount: YKCDecimal(units: 0, scale: 4), hardwareFaults: .init(raw: 0))
        }
        let minutes = UInt16(clamping: (NIODeadline.now() - s.startedAt).nanoseconds / 60_000_000_000)
        let currentDeciAmps = Int64(config.chargingPowerKW * 1000 / 400 * 10)
        let amount = TransactionRecord.amount(energyRaw: s.energyRaw, pricePerKWh: totalFlatPrice())
        return RealtimeData(
            tradeSerial: s.tradeSerial, pileId: pileID, gun: guns[g].number, status: .charging, gunHolstered: .no,
            gunPlugged: .yes, outputVoltage: YKCDecimal(units: 4000, scale: 1),
            outputCurrent: YKCDecimal(units: max(0, min(currentDeciAmps, 65535)), scale: 1),
            gunTemperature: YKCDecimal(units: 30, scale: 0), gunCableCode: .zero,
            soc: UInt8(clamping: 30 + Int(minutes)), maxBatteryTemperature: YKCDecimal(units: 28, scale: 0),
            chargingMinutes: minutes, remainingMinutes: 60, energy: YKCDecimal(units: Int64(s.energyRaw), scale: 4),
            lossAdjustedEnergy: YKCDecimal(units: Int64(s.energyRaw), scale: 4), amount: amount,
            hardwareFaults: .init(raw: 0))
    }

    func sendRealtime(gun g: Int, sequence: YKCSequence? = nil) {
        guard context != nil, guns.indices.contains(g) else { return }
        send(realtime(gun: g), sequence ?? nextSequence(gun: g))
    }

    // MARK: - Pile-initiated start (0x31 → 0x32)

    func requestCardStart(
        gun g: Int, card: BinaryID, timeout: TimeAmount, promise: EventLoopPromise<StartRequestReply>
    ) {
        guard guns.indices.contains(g) else { return promise.fail(SimulatedPileError.invalidGun(g + 1)) }
        guard phase == .loggedIn else { return promise.fail(SimulatedPileError.notConnected) }
        if let old = guns[g].cardStartWaiter {
            old.timer.cancel()
            old.promise.fail(SimulatedPileError.timeout("0x32 (superseded by a new 0x31)"))
        }
        guns[g].pendingCard = card
        let request = StartRequest(
            pileId: pileID, gun: guns[g].number, startMethod: .card, passwordRequired: .no, cardNumber: card,
            password: HexBytes(zeros: 16), vin: "")
        send(request, nextSequence(gun: g))
        let timer = after(timeout) {
            if let w = self.guns[g].cardStartWaiter {
                self.guns[g].cardStartWaiter = nil
                w.promise.fail(SimulatedPileError.timeout("0x32 for gun \(g + 1)"))
            }
        }
        guns[g].cardStartWaiter = (promise, timer)
    }

    func handleStartRequestReply(_ frame: YKCFrame) {
        var body = frame.body
        guard let reply = try? StartRequestReply(decoding: &body), let g = gunIndex(reply.gun) else { return }
        startReplies.append(reply)
        if startReplies.count > 64 { startReplies.removeFirst() }
        if reply.authResult == .succeeded {
            beginSession(
                gun: g, tradeSerial: reply.tradeSerial, origin: .card, card: guns[g].pendingCard ?? .zero)
        }
        guns[g].pendingCard = nil
        if let w = guns[g].cardStartWaiter {
            guns[g].cardStartWaiter = nil
            w.timer.cancel()
            w.promise.succeed(reply)
        }
    }

    // MARK: - Bills (0x3B → 0x40, docs/ykc/PROTOCOL-FACTS.md §5.5)

    func enqueueBill(_ record: TransactionRecord) throws {
        let serial = record.tradeSerial
        guard pendingBills[serial] == nil else { throw SimulatedPileError.duplicateBill(serial) }
        billsAcked.remove(serial)
        billsAbandoned.remove(serial)
        pendingBills[serial] = PendingBill(record: record, gunIndex: gunIndex(record.gun) ?? 0)
        billOrder.append(serial)
        counters?.billsQueued.wrappingIncrement(ordering: .relaxed)
        if phase == .loggedIn { sendBill(serial) }
        notify()
    }

    func sendBill(_ serial: TradeSerial) {
        guard phase == .loggedIn, var bill = pendingBills[serial] else { return }
        bill.timer?.cancel()
        if bill.sends >= config.billMaxSends {
            pendingBills[serial] = nil
            billOrder.removeAll { $0 == serial }
            billsAbandoned.insert(serial)
            counters?.billsAbandoned.wrappingIncrement(ordering: .relaxed)
            notify()
            return
        }
        send(bill.record, nextSequence(gun: bill.gunIndex))
        if bill.firstSentAt == nil { bill.firstSentAt = .now() }
        bill.sends += 1
        counters?.billFramesSent.wrappingIncrement(ordering: .relaxed)
        if config.detailedStats { billSends[serial] = (billSends[serial] ?? 0) + 1 }
        bill.timer = after(config.billRetryInterval) { self.sendBill(serial) }
        pendingBills[serial] = bill
    }

    func handleBillAck(_ frame: YKCFrame) {
        var body = frame.body
        guard let ack = try? TransactionRecordAck(decoding: &body) else { return }
        guard let bill = pendingBills.removeValue(forKey: ack.tradeSerial) else { return }
        bill.timer?.cancel()
        billOrder.removeAll { $0 == ack.tradeSerial }
        // The pile deletes the stored bill on any 0x40, "illegal bill" included.
        billsAcked.insert(ack.tradeSerial)
        billAckResults[ack.tradeSerial] = ack.result
        counters?.billsAcked.wrappingIncrement(ordering: .relaxed)
        let latency = bill.firstSentAt.map { NIODeadline.now() - $0 } ?? .zero
        counters?.billAckLatency.record(latency)
        config.onBillAcked?(pileID, ack.tradeSerial, ack.result, latency)
        refillBills()
    }

    /// Queues a simulated bill for a random gun with a serial unique to this pile (a per-pile
    /// counter in the serial's last four digits, so two bills of one second never collide).
    func enqueueSimulatedBill() {
        let gun = guns[Int.random(in: 0..<guns.count)].number
        billCounter &+= 1
        let serial = TradeSerial.simulated(pileID: pileID, gun: gun, counter: billCounter)
        try? enqueueBill(.simulated(pileID: pileID, gun: gun, tradeSerial: serial))
    }

    /// Closed-loop load (`billsInFlight`): tops the outstanding bills up while logged in.
    func refillBills() {
        guard config.billsInFlight > 0, phase == .loggedIn, config.billLoad?.isEnabled ?? true else { return }
        var attempts = 0
        while pendingBills.count < config.billsInFlight && attempts < config.billsInFlight * 2 {
            enqueueSimulatedBill()
            attempts += 1
        }
    }

    // MARK: - Observation

    func record(_ frame: YKCFrame) {
        if let i = frameWaiters.firstIndex(where: { $0.code == frame.code }) {
            let w = frameWaiters.remove(at: i)
            w.timer.cancel()
            w.promise.succeed(frame)
        } else if config.recordFrames > 0 {
            inbox.append(frame)
            if inbox.count > config.recordFrames { inbox.removeFirst() }
        }
        if config.recordFrames > 0 {
            history.append(frame)
            if history.count > config.recordFrames { history.removeFirst() }
        }
    }

    func waitForFrame(code: UInt8, timeout: TimeAmount, promise: EventLoopPromise<YKCFrame>) {
        if let i = inbox.firstIndex(where: { $0.code == code }) {
            promise.succeed(inbox.remove(at: i))
            return
        }
        guard phase != .stopped else { return promise.fail(SimulatedPileError.stopped) }
        let id = nextWaiterID
        nextWaiterID += 1
        let timer = after(timeout) {
            guard let i = self.frameWaiters.firstIndex(where: { $0.id == id }) else { return }
            let w = self.frameWaiters.remove(at: i)
            w.promise.fail(
                SimulatedPileError.timeout("frame 0x\(String(code, radix: 16)); \(self.snapshot().summary)"))
        }
        frameWaiters.append(FrameWaiter(id: id, code: code, promise: promise, timer: timer))
    }

    func waitUntil(
        timeout: TimeAmount, description: String, predicate: @escaping @Sendable (SimulatedPileState) -> Bool,
        promise: EventLoopPromise<SimulatedPileState>
    ) {
        let state = snapshot()
        if predicate(state) { return promise.succeed(state) }
        guard phase != .stopped else { return promise.fail(SimulatedPileError.stopped) }
        let id = nextWaiterID
        nextWaiterID += 1
        let timer = after(timeout) {
            guard let i = self.stateWaiters.firstIndex(where: { $0.id == id }) else { return }
            let w = self.stateWaiters.remove(at: i)
            w.promise.fail(SimulatedPileError.timeout("\(description); \(self.snapshot().summary)"))
        }
        stateWaiters.append(StateWaiter(id: id, predicate: predicate, promise: promise, timer: timer))
    }

    /// Re-checks state waiters; costs nothing when none are registered (the load path).
    func notify() {
        guard !stateWaiters.isEmpty else { return }
        let state = snapshot()
        var i = 0
        while i < stateWaiters.count {
            if stateWaiters[i].predicate(state) {
                let w = stateWaiters.remove(at: i)
                w.timer.cancel()
                w.promise.succeed(state)
            } else {
                i += 1
            }
        }
    }

    func snapshot() -> SimulatedPileState {
        var state = SimulatedPileState(
            pileID: pileID, phase: phase, isConnected: context != nil, loginResult: loginResult,
            loginAttempts: loginAttempts, loginsAccepted: loginsAccepted, loginsRejected: loginsRejected,
            loginTimeouts: loginTimeouts, lastLoginLatency: lastLoginLatency, billingModel: billingModel,
            billingModelRequestsSent: billingModelRequestsSent,
            guns: guns.map {
                GunSnapshot(
                    gun: $0.number.number, heartbeatsSent: $0.heartbeatsSent, heartbeatsAcked: $0.heartbeatsAcked,
                    unansweredHeartbeats: $0.unanswered, lastHeartbeatSequence: $0.lastHeartbeatSequence,
                    lastEchoedSequence: $0.lastEchoedSequence, chargingTradeSerial: $0.session?.tradeSerial,
                    sessionEnergy: YKCDecimal(units: Int64($0.session?.energyRaw ?? 0), scale: 4))
            },
            framesReceived: framesReceived, framesSent: framesSent, parseErrors: parseErrors,
            pendingBills: billOrder, billsAcked: billsAcked, billAckResults: billAckResults,
            billsAbandoned: billsAbandoned, billSends: billSends, startReplies: startReplies,
            connectAttempts: connectAttempts, connectionsOpened: connectionsOpened,
            connectionsClosed: connectionsClosed, connectFailures: connectFailures, lastCloseReason: lastCloseReason,
            readingPaused: readingPaused)
        state.framesDecrypted = framesDecrypted
        state.undecryptableFrames = undecryptableFrames
        return state
    }
}

/// Feeds one connection's events into its pile's core. Created per connection; the
/// `connectionID` lets the core ignore a late event from a connection it already gave up.
final class PileChannelHandler: ChannelInboundHandler {
    typealias InboundIn = YKCParseEvent
    typealias OutboundOut = ByteBuffer

    let core: PileCore
    let connectionID: Int

    init(core: PileCore, connectionID: Int) {
        self.core = core
        self.connectionID = connectionID
    }

    func channelActive(context: ChannelHandlerContext) {
        core.connectionActive(context, connectionID: connectionID)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        core.connectionInactive(connectionID: connectionID)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .frame(let frame): core.received(frame, connectionID: connectionID)
        case .error(let error): core.parseError(error, connectionID: connectionID)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        core.channelError(error, connectionID: connectionID)
    }
}

@available(*, unavailable)
extension PileChannelHandler: Sendable {}
