import NIOCore
import NIOPosix
import NIOSSL
import YKC

/// How a pile's connection comes and goes: connect, login deadline, close with a reason, reconnect
/// with back-off, stop, and the read switch for slow-reader tests.
extension PileCore {
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
        if connectAttempts > 0, config.failoverTargets.count > 1 {
            let others = config.failoverTargets.filter { $0 != target }
            target = others.randomElement() ?? target
        }
        connectAttempts += 1
        counters?.connectAttempts.wrappingIncrement(ordering: .relaxed)
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        connectTimedOut = false
        connectTimer = after(config.connectTimeout) { self.connectDeadlinePassed(connectionID: id) }
        var bootstrap = ClientBootstrap(group: eventLoop)
            // Only a backstop: the deadline is `connectTimer` (see `connectDeadlinePassed`).
            .connectTimeout(config.connectTimeout + Self.connectTimeoutBackstop)
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
            if core.value.connectionID == connectionID { core.value.connectingChannel = channel }
            let config = core.value.config
            if let tls = config.tls {
                try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: config.tlsServerName))
            }
            try sync.addHandler(ByteToMessageHandler(YKCFrameDecoder(), maximumBufferSize: 16 * 1024))
            try sync.addHandler(PileChannelHandler(core: core.value, connectionID: connectionID))
        }
    }

    /// How much longer than `config.connectTimeout` NIO's own connect timeout is: it fires only
    /// if the wheel's deadline could not close the channel.
    static let connectTimeoutBackstop = TimeAmount.seconds(30)

    /// The connect deadline: a connect still pending is abandoned (its channel closed, which fails
    /// the connect and goes on in `connectCompleted`). Being a wheel timer, it runs only after the
    /// loop has polled its sockets, so a connect the kernel finished is seen first, as a pile's
    /// own TCP stack would see it.
    func connectDeadlinePassed(connectionID id: Int) {
        guard id == connectionID, phase == .connecting, let channel = connectingChannel else { return }
        connectTimedOut = true
        channel.close(promise: nil)
    }

    /// "Connect timeout (5 s)", as NIO words its own.
    static func connectTimeoutText(_ timeout: TimeAmount) -> String {
        let ms = timeout.nanoseconds / 1_000_000
        return ms % 1000 == 0 ? "Connect timeout (\(ms / 1000) s)" : "Connect timeout (\(ms) ms)"
    }

    func connectCompleted(_ result: Result<any Channel, any Error>, connectionID id: Int) {
        if id == connectionID {
            connectTimer?.cancel()
            connectTimer = nil
            connectingChannel = nil
        }
        switch result {
        case .success(let channel):
            if id != connectionID || phase == .stopped {
                channel.close(promise: nil)
            }
        case .failure(let error):
            guard id == connectionID, phase == .connecting else { return }
            connectFailures += 1
            counters?.connectFailures.wrappingIncrement(ordering: .relaxed)
            lastCloseReason = .connectFailed(connectTimedOut ? Self.connectTimeoutText(config.connectTimeout) : "\(error)")
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
        connectTimer?.cancel()
        connectTimer = nil
        connectingChannel = nil
        phase = .awaitingLogin
        connectionsOpened += 1
        counters?.connected.wrappingIncrement(ordering: .relaxed)
        loggedInThisConnection = false
        billingModelReceivedThisConnection = false
        sequencer.reset()
        for g in guns.indices { guns[g].unanswered = 0 }
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
        connectTimer?.cancel()
        connectTimer = nil
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
        chargingCycleTimer?.cancel()
        chargingCycleTimer = nil
        bills.cancelTimers()
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
}
