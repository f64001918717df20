import Foundation
import Logging
import NIOCore
import YKC
import YKCCipher

/// One pile connection: executes the session state machine's rules, answers what the gateway
/// answers alone (login, per-gun heartbeats, time sync), hands the rest to the event sink, and
/// enforces the per-connection limits (frame/byte token buckets with read backpressure, malformed
/// and refused frame caps, slow readers).
///
/// Framing is done here too, with `YKCFrameParser` on the bytes as they arrive, rather than by a
/// `ByteToMessageHandler` in front: one handler (and one pipeline hop) less per connection, and
/// no buffer kept between reads unless a frame is split across them.
///
/// All state is confined to the channel's event loop; the per-frame path takes no lock and logs
/// nothing at info level.
final class PileSessionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let gateway: GatewayContext
    private var parser = YKCFrameParser()
    /// The start of a frame split across reads (at most one frame, ≤ 259 bytes: the parser
    /// skips garbage and waits only for a frame's announced length); nil when nothing is pending.
    private var partial: ByteBuffer?
    private var machine: PileSessionStateMachine
    private var frameBucket: TokenBucket
    private var byteBucket: TokenBucket
    private var context: ChannelHandlerContext?

    private var connectionId: UInt64 = 0
    private var remoteAddress = "?"
    private var remoteHost = "?"
    private var connectedAt = Date()
    private var admitted = false
    private var loggedIn = false
    /// The logged-in session, shared with the session directory (one copy of the session info
    /// per pile, not one here and one there).
    private var handle: PileSessionHandle?
    private var session: PileSessionInfo? { handle?.info }
    private var closeReason: OfflineReason?

    /// Checked by the loop's sweeper: before login, the login deadline; after, the last complete frame.
    private var loginDeadline: NIODeadline?
    private var lastActivity = NIODeadline.now()
    private var sweeper: LivenessSweeper?
    private var slowReaderTimer: Scheduled<Void>?
    private var readPaused = false
    private var throttlePaused = false
    private var writePaused = false
    private var pendingRead = false

    private var platformSequence: UInt16 = 0
    /// True between a channelRead and its channelReadComplete: writes are flushed once at the end.
    private var inReadBatch = false
    private var needsFlush = false
    private var guns: [GunTrack] = []
    private var framesIn = 0
    private var framesOut = 0
    private var lastFrameAt: NIODeadline?
    /// Commands waiting for the pile's reply, and the one timer armed for the earliest deadline.
    private var pendingCommands: PendingCommands<EventLoopPromise<YKCMessage>>
    private var commandTimer: Scheduled<Void>?
    private var commandTimerDeadline: NIODeadline?
    /// Lane rules version the session's lane was decided under.
    private var laneVersion = 0
    /// Guns with an open charging transaction (by trade serial), which pins the lane.
    private var openTransactions: [GunNumber: TradeSerial] = [:]
    /// The pile's frame key (flag 0x01), re-read when the key store's version moves.
    private var cipher: FrameCipher?
    private var cipherVersion = -1
    /// Set once the pile has sent an encrypted frame: every frame to it is encrypted from then on.
    private var encryptOutgoing = false
    /// The first encrypted-frame refusal on a connection logs a warning, later ones debug.
    private var loggedEncryptionRefusal = false

    private struct GunTrack {
        var gun: GunNumber
        var state: GunState
        var lastHeartbeat: Date?
        var status: GunStatus?
    }

    init(gateway: GatewayContext) {
        self.gateway = gateway
        let c = gateway.config
        let now = NIODeadline.now()
        machine = PileSessionStateMachine(
            limits: .init(
                maxMalformed: c.maxMalformedFrames, maxRefused: c.maxRefusedFrames,
                maxThrottleEpisodes: c.maxThrottleEpisodes,
                throttleWindow: TimeAmount.fromSeconds(c.throttleWindow)))
        frameBucket = TokenBucket(rate: c.frameRatePerSecond, burst: c.frameBurst, now: now)
        byteBucket = TokenBucket(rate: c.byteRatePerSecond, burst: c.byteBurst, now: now)
        pendingCommands = PendingCommands(limit: c.maxCommandsPerPile)
    }

    // MARK: lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        connectionId = gateway.acceptOrder.take(context.channel)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        handle = nil  // it holds the channel: no cycle left behind once the pipeline is torn down
    }

    func channelActive(context: ChannelHandlerContext) {
        connectedAt = Date()
        if let remote = context.channel.remoteAddress {
            remoteHost = remote.ipAddress ?? "?"
            remoteAddress = "\(remoteHost):\(remote.port ?? 0)"
        }
        if gateway.shuttingDown.load(ordering: .relaxed) {
            close(context: context, reason: .shutdown)
            context.fireChannelActive()
            return
        }
        if gateway.admission.admit(host: remoteHost) != nil {
            closeReason = .admissionRefused
            context.close(promise: nil)
            context.fireChannelActive()
            return
        }
        admitted = true
        lastActivity = .now()
        loginDeadline = lastActivity + TimeAmount.fromSeconds(gateway.config.loginTimeout)
        sweeper = gateway.liveness.sweeper(for: context.eventLoop)
        sweeper?.add(connectionId, self)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if closeReason == nil { countTrailingInput() }
        partial = nil
        var reason = closeReason ?? .closedByPile
        closeReason = reason
        sweeper?.remove(connectionId)
        sweeper = nil
        slowReaderTimer?.cancel()
        commandTimer?.cancel()
        commandTimer = nil
        for promise in pendingCommands.removeAll() { promise.fail(PileCommandError.pileOffline) }
        if let session {
            // The directory says who owns the pile. A connection whose entry a newer login has
            // taken over was replaced, however it ended (the pile may close it before the
            // replacement's close command arrives): it neither marks the pile offline nor
            // publishes pile_offline. An owner records and publishes its offline under the pile's
            // directory lock, the lock a newer login registers and publishes pile_online under, so
            // the two are never reordered.
            let owned = gateway.directory.remove(pileId: session.pileId, connectionId: connectionId) {
                gateway.registry.recordOffline(session.pileId, reason: reason)
                gateway.sink.sessionOffline(session, reason: reason)
            }
            if !owned {
                reason = .replaced
                closeReason = .replaced
            }
            gateway.counters.online.wrappingDecrement(ordering: .relaxed)
            let level: Logger.Level = (reason == .kicked || reason == .replaced) ? .info : .debug
            gateway.logger.log(
                level: level, "pile offline",
                metadata: [
                    "pile": "\(session.pileId)", "lane": "\(session.lane)", "connection": "\(connectionId)",
                    "address": "\(remoteAddress)", "reason": "\(reason.rawValue)",
                ])
        }
        gateway.counters.closed[reason]?.wrappingIncrement(ordering: .relaxed)
        // Released last: shutdown waits for the connection count to reach zero and then flushes
        // the registry, so the offline record above must already be queued.
        if admitted {
            gateway.admission.released(host: remoteHost, wasPending: !loggedIn)
        }
        _ = machine.close()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if closeReason == nil {
            // Connection resets are the pile going away; anything else is worth a debug line.
            closeReason = isReset(error) ? .closedByPile : .error
        }
        gateway.logger.debug("pile connection error", metadata: ["connection": "\(connectionId)", "error": "\(error)"])
        context.close(promise: nil)
    }

    private func isReset(_ error: any Error) -> Bool {
        if let e = error as? IOError { return e.errnoCode == ECONNRESET || e.errnoCode == EPIPE }
        return false
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard closeReason == nil else { return }
        var bytes = unwrapInboundIn(data)
        if var pending = partial {
            partial = nil
            pending.writeBuffer(&bytes)
            bytes = pending
        }
        inReadBatch = true
        while closeReason == nil, let event = parser.next(&bytes) {
            handle(context: context, event: event)
        }
        if closeReason == nil, bytes.readableBytes > 0 {
            guard bytes.readableBytes <= YKCFrameParser.maximumFrameSize else {
                // Cannot happen with the parser's rules; a hard bound all the same.
                malformed(context: context, error: .truncated(have: bytes.readableBytes, need: YKCFrameParser.maximumFrameSize))
                close(context: context, reason: .malformedInput)
                return
            }
            partial = bytes
        }
    }

    /// Whatever was left of a frame when the pile closed is counted as truncated input.
    private func countTrailingInput() {
        guard var rest = partial else { return }
        partial = nil
        while let event = parser.nextAtEnd(&rest) {
            if case .error(let error) = event { gateway.counters.malformed[error.kind]?.wrappingIncrement(ordering: .relaxed) }
        }
    }

    private func handle(context: ChannelHandlerContext, event: YKCParseEvent) {
        switch event {
        case .error(let error):
            malformed(context: context, error: error)
        case .frame(var frame):
            let size = frame.body.readableBytes + 8
            // Liveness counts complete frames only: a pile trickling a byte now and then into a
            // frame that never completes is not alive.
            let now = NIODeadline.now()
            lastActivity = now
            if !charge(context: context, bytes: size, frames: 1) { return }
            lastFrameAt = now
            framesIn += 1
            gateway.counters.frameIn(code: frame.code, bytes: size)
            if frame.crcOrder == .highFirst { gateway.counters.swappedCRC.wrappingIncrement(ordering: .relaxed) }
            if frame.encryption == FrameCipher.encryptedFlag {
                gateway.counters.encryptedIn.wrappingIncrement(ordering: .relaxed)
                guard let plain = decrypt(context: context, frame: frame) else { return }
                frame = plain
            }
            let message = YKCMessage.decode(frame)
            if case .raw(let raw) = message {
                gateway.counters.undecoded[raw.reason.kind]?.wrappingIncrement(ordering: .relaxed)
            }
            switch machine.frameReceived(message) {
            case .decideLogin(let login):
                beginLogin(context: context, login: login, frame: frame)
            case .reconfirmLogin:
                writeReply(context: context, code: LoginReply.code, sequence: frame.sequence) {
                    LoginReply(pileId: self.machine.pileId ?? PileID(raw: 0), result: .accepted).encode(into: &$0)
                }
            case .ignore:
                break
            case .process:
                process(context: context, message: message, frame: frame)
            case .refuse(let r):
                countRefusal(r, code: frame.code)
            case .refuseAndClose(let r):
                countRefusal(r, code: frame.code)
                close(context: context, reason: .refusedFrames)
            }
        }
    }

    private func countRefusal(_ r: PileSessionStateMachine.Refusal, code: UInt8) {
        switch r {
        case .beforeLogin: gateway.counters.refusedBeforeLogin.wrappingIncrement(ordering: .relaxed)
        case .foreignPile: gateway.counters.refusedForeignPile.wrappingIncrement(ordering: .relaxed)
        }
        gateway.logger.debug(
            "frame refused",
            metadata: ["connection": "\(connectionId)", "code": "\(code)", "why": "\(r)", "address": "\(remoteAddress)"])
    }

    // MARK: encrypted frames

    /// Why an encrypted frame was refused.
    private enum EncryptedRefusal: String {
        /// The pile has no key, or no configured key opens an encrypted login.
        case noKey = "encrypted_no_key"
        /// The pile's key does not decrypt the body (PKCS#7 check or block length).
        case undecryptable
    }

    /// The frame with its body decrypted by the pile's key, or nil when it is refused (counted,
    /// logged, and charged against `maxMalformedFrames`).
    ///
    /// Before login the pile is unknown: an encrypted login is opened by trying the configured keys
    /// (`PileKeyStore.openLogin`); any other encrypted frame is passed on as it is and refused by
    /// the session rules as coming before login.
    private func decrypt(context: ChannelHandlerContext, frame: YKCFrame) -> YKCFrame? {
        guard let pileId = machine.pileId else {
            guard frame.code == Login.code else { return frame }
            let version = gateway.keys.version
            guard let (found, plain) = gateway.keys.openLogin(frame, limit: gateway.config.encryptedLoginKeyTrials) else {
                refuseEncrypted(context: context, frame: frame, reason: .noKey, detail: "no configured key opens this login")
                return nil
            }
            cipher = found
            cipherVersion = version
            encryptOutgoing = true
            return plain
        }
        guard let cipher = currentCipher(pileId) else {
            refuseEncrypted(context: context, frame: frame, reason: .noKey, detail: "the pile has no frame key")
            return nil
        }
        do {
            let plain = try cipher.decrypt(frame: frame)
            encryptOutgoing = true
            return plain
        } catch {
            refuseEncrypted(context: context, frame: frame, reason: .undecryptable, detail: error.description)
            return nil
        }
    }

    /// The pile's key, looked up again only when a key was set or removed since the last look.
    private func currentCipher(_ pileId: PileID) -> FrameCipher? {
        let version = gateway.keys.version
        if version != cipherVersion {
            cipherVersion = version
            cipher = gateway.keys.cipher(for: pileId)
        }
        return cipher
    }

    private func refuseEncrypted(context: ChannelHandlerContext, frame: YKCFrame, reason: EncryptedRefusal, detail: String) {
        switch reason {
        case .noKey: gateway.counters.refusedEncryptedNoKey.wrappingIncrement(ordering: .relaxed)
        case .undecryptable: gateway.counters.refusedUndecryptable.wrappingIncrement(ordering: .relaxed)
        }
        let level: Logger.Level = loggedEncryptionRefusal ? .debug : .warning
        loggedEncryptionRefusal = true
        gateway.logger.log(
            level: level, "encrypted frame refused",
            metadata: [
                "connection": "\(connectionId)", "address": "\(remoteAddress)", "pile": "\(machine.pileId?.description ?? "-")",
                "code": "\(GatewayCounters.typeLabel(frame.code))", "reason": "\(reason.rawValue)", "detail": "\(detail)",
            ])
        if machine.malformed() {
            close(context: context, reason: .malformedInput)
        }
    }

    private func malformed(context: ChannelHandlerContext, error: YKCFrameError) {
        gateway.counters.malformed[error.kind]?.wrappingIncrement(ordering: .relaxed)
        var bytes = 1
        if case .garbage(let n) = error {
            bytes = n
            gateway.counters.garbageBytes.wrappingIncrement(by: n, ordering: .relaxed)
        }
        if !charge(context: context, bytes: bytes, frames: 0) { return }
        if machine.malformed() {
            gateway.logger.notice(
                "closing connection sending malformed input",
                metadata: [
                    "connection": "\(connectionId)", "address": "\(remoteAddress)",
                    "pile": "\(machine.pileId?.description ?? "-")", "last": "\(error)",
                ])
            close(context: context, reason: .malformedInput)
        }
    }

    /// Charges the token buckets; on overdraft starts a throttle episode (pause reading) or
    /// closes. Returns false when the connection is being closed.
    private func charge(context: ChannelHandlerContext, bytes: Int, frames: Int) -> Bool {
        let now = NIODeadline.now()
        let framesOK = frames == 0 || frameBucket.take(Double(frames), now: now)
        let bytesOK = byteBucket.take(Double(bytes), now: now)
        if framesOK && bytesOK { return true }
        if throttlePaused { return true }  // already in an episode; the frame is still served
        gateway.counters.throttleEpisodes.wrappingIncrement(ordering: .relaxed)
        switch machine.throttled(now: now) {
        case .close:
            gateway.logger.notice(
                "closing connection over its rate limit",
                metadata: ["connection": "\(connectionId)", "address": "\(remoteAddress)", "pile": "\(machine.pileId?.description ?? "-")"])
            close(context: context, reason: .rateLimited)
            return false
        case .pause:
            let pause = max(
                TimeAmount.fromSeconds(gateway.config.throttlePause),
                max(frameBucket.delay(), byteBucket.delay()))
            gateway.logger.info(
                "pile over its rate limit: pausing reads",
                metadata: [
                    "connection": "\(connectionId)", "address": "\(remoteAddress)",
                    "pile": "\(machine.pileId?.description ?? "-")", "pause_ms": "\(pause.nanoseconds / 1_000_000)",
                ])
            throttlePaused = true
            updateReadPause()
            context.eventLoop.assumeIsolated().scheduleTask(in: pause) { [self] in
                throttlePaused = false
                updateReadPause()
            }
            return true
        }
    }

    // MARK: login

    private func beginLogin(context: ChannelHandlerContext, login: Login, frame: YKCFrame) {
        guard gateway.admission.pileMayLogin(login.pileId.description) else {
            gateway.counters.refused[.pileBanned]?.wrappingIncrement(ordering: .relaxed)
            finishLogin(context: context, login: login, sequence: frame.sequence, accepted: false, reason: .admissionRefused)
            return
        }
        let delay = gateway.admission.loginDelay()
        if delay > .zero {
            gateway.counters.loginsDeferred.wrappingIncrement(ordering: .relaxed)
            context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
                guard let ctx = self.context, closeReason == nil else { return }
                decideLogin(context: ctx, login: login, sequence: frame.sequence)
            }
        } else {
            decideLogin(context: context, login: login, sequence: frame.sequence)
        }
    }

    /// Rebuilds the frame and byte buckets from the pile's override (PileLimitStore), if it has
    /// one: limits the override leaves out follow the configuration. Memory only, once per login.
    private func applyLimitOverride(for pile: PileID) {
        guard let o = gateway.limits.limits(for: pile) else { return }
        let c = gateway.config
        let now = NIODeadline.now()
        frameBucket = TokenBucket(rate: o.frameRatePerSecond ?? c.frameRatePerSecond, burst: o.frameBurst ?? c.frameBurst, now: now)
        byteBucket = TokenBucket(rate: o.byteRatePerSecond ?? c.byteRatePerSecond, burst: o.byteBurst ?? c.byteBurst, now: now)
    }

    private func decideLogin(context: ChannelHandlerContext, login: Login, sequence: YKCSequence) {
        switch gateway.config.loginPolicy {
        case .open:
            finishLogin(context: context, login: login, sequence: sequence, accepted: true)
        case .registry:
            finishLogin(context: context, login: login, sequence: sequence, accepted: gateway.registry.isKnown(login.pileId))
        case .backend:
            let timeout = TimeAmount.fromSeconds(gateway.config.backendLoginTimeout)
            let fallback = gateway.config.backendLoginFallbackAccept
            let decision = gateway.sink.decideLogin(login, remoteAddress: remoteAddress, on: context.eventLoop)
            let timer = context.eventLoop.makePromise(of: Bool?.self)
            let scheduled = context.eventLoop.scheduleTask(in: timeout) { timer.succeed(nil) }
            decision.cascade(to: timer)
            timer.futureResult.assumeIsolated().whenComplete { [self] result in
                scheduled.cancel()
                guard let ctx = self.context, closeReason == nil else { return }
                let answer = (try? result.get()) ?? nil
                finishLogin(context: ctx, login: login, sequence: sequence, accepted: answer ?? fallback)
            }
        }
    }

    private func finishLogin(
        context: ChannelHandlerContext, login: Login, sequence: YKCSequence, accepted: Bool,
        reason: OfflineReason = .loginRejected
    ) {
        guard machine.loginDecided(accepted: accepted) else { return }
        writeReply(context: context, code: LoginReply.code, sequence: sequence) {
            LoginReply(pileId: login.pileId, result: accepted ? .accepted : .rejected).encode(into: &$0)
        }
        guard accepted else {
            gateway.counters.loginsRejected.wrappingIncrement(ordering: .relaxed)
            gateway.logger.debug(
                "login rejected", metadata: ["pile": "\(login.pileId)", "address": "\(remoteAddress)", "connection": "\(connectionId)"])
            close(context: context, reason: reason)
            return
        }
        loginDeadline = nil
        loggedIn = true
        applyLimitOverride(for: login.pileId)
        gateway.admission.loggedIn()
        laneVersion = gateway.sink.laneRulesVersion
        let lane = gateway.sink.lane(for: login, remoteHost: remoteHost)
        let info = PileSessionInfo(
            connectionId: connectionId, pileId: login.pileId, remoteAddress: remoteAddress, remoteHost: remoteHost,
            login: login, lane: lane, connectedAt: connectedAt, loggedInAt: Date())
        gateway.counters.loginsAccepted.wrappingIncrement(ordering: .relaxed)
        gateway.counters.sessionOnline()
        let handle = PileSessionHandle(info: info, channel: context.channel)
        self.handle = handle
        let registry = gateway.registry
        let sink = gateway.sink
        let node = gateway.config.nodeId
        // Registered, recorded and published under the pile's directory lock (see channelInactive).
        let registration = gateway.directory.register(handle) {
            registry.recordLogin(info, node: node)
            sink.sessionOnline(info)
        }
        guard case .registered(let replaced) = registration else {
            // A newer connection of this pile logged in first: this one is the stale one and ends
            // as a replaced session would (channelInactive finds it does not own the pile).
            gateway.logger.info(
                "login on an older connection: the pile's newer connection keeps the session",
                metadata: ["pile": "\(login.pileId)", "connection": "\(connectionId)", "address": "\(remoteAddress)"])
            close(context: context, reason: .replaced)
            return
        }
        if let old = replaced {
            gateway.counters.takeovers.wrappingIncrement(ordering: .relaxed)
            gateway.logger.info(
                "duplicate login: new connection replaces the old one",
                metadata: [
                    "pile": "\(login.pileId)", "lane": "\(lane)", "new_address": "\(remoteAddress)",
                    "new_connection": "\(connectionId)", "old_address": "\(old.info.remoteAddress)",
                    "old_connection": "\(old.info.connectionId)",
                ])
            old.close(reason: .replaced)
        }
        if gateway.config.timeSyncOnLogin {
            let sync = TimeSync(pileId: login.pileId, time: CP56Time2a(date: Date(), utcOffsetSeconds: gateway.config.pileUTCOffsetSeconds))
            writePlatformFrame(context: context, message: .timeSync(sync))
        }
    }

    // MARK: logged-in traffic

    private func process(context: ChannelHandlerContext, message: YKCMessage, frame: YKCFrame) {
        trackTransactions(message)
        if openTransactions.isEmpty { reconsiderLane(context: context) }
        guard let session else { return }
        switch message {
        case .heartbeat(let hb):
            gateway.counters.heartbeats.wrappingIncrement(ordering: .relaxed)
            trackGun(hb.gun) { $0.state = hb.gunState; $0.lastHeartbeat = Date() }
            writeReply(context: context, code: HeartbeatReply.code, sequence: frame.sequence) {
                HeartbeatReply(pileId: hb.pileId, gun: hb.gun, reply: 0).encode(into: &$0)
            }
            if gateway.sink.wants(code: frame.code) {
                gateway.sink.frameReceived(message, frame: frame, session: session, receivedAt: Date())
            }
            return
        case .realtimeData(let rt):
            trackGun(rt.gun) { $0.status = rt.status }
        default:
            break
        }
        if let waiting = pendingCommands.match(code: frame.code, sequence: frame.sequence, gun: message.gun) {
            waiting.succeed(message)
            // A reply to a command: the command's caller gets it; backends still get the event.
            if gateway.sink.wants(code: frame.code) {
                gateway.sink.frameReceived(message, frame: frame, session: session, receivedAt: Date())
            }
            return
        }
        if Self.requestCodes.contains(frame.code) {
            let promise = context.eventLoop.makePromise(of: YKCMessage?.self)
            let sequence = frame.sequence
            gateway.sink.request(message, frame: frame, session: session, receivedAt: Date(), respond: promise)
            promise.futureResult.assumeIsolated().whenComplete { [self] result in
                guard let ctx = self.context, closeReason == nil else { return }
                if case .success(let reply?) = result {
                    writeMessage(context: ctx, message: reply, sequence: sequence)
                } else if let fallback = Self.fallbackReply(to: message) {
                    writeMessage(context: ctx, message: fallback, sequence: sequence)
                }
            }
            return
        }
        if gateway.sink.wants(code: frame.code) {
            gateway.sink.frameReceived(message, frame: frame, session: session, receivedAt: Date())
        }
    }

    /// Pile requests that expect a business answer from the platform (docs/ykc/PROTOCOL-FACTS.md §5.7).
    static let requestCodes: Set<UInt8> = [0x05, 0x09, 0x31, 0x3B, 0xA1]

    /// The gateway's own answer when no backend decides: start requests are refused with a
    /// reason so the pile shows it; billing-model and bill answers need data the sink owns.
    static func fallbackReply(to message: YKCMessage) -> YKCMessage? {
        switch message {
        case .startRequest(let r):
            return .startRequestReply(
                StartRequestReply(
                    tradeSerial: .zero, pileId: r.pileId, gun: r.gun, logicalCardNumber: BCDDigits("0", byteCount: 8) ?? "0000000000000000",
                    balance: YKCDecimal(units: 0, scale: 2), authResult: .failed, failureReason: .pileDisabled))
        case .parallelStartRequest(let r):
            return .parallelStartRequestReply(
                ParallelStartRequestReply(
                    tradeSerial: .zero, pileId: r.pileId, gun: r.gun, logicalCardNumber: BCDDigits("0", byteCount: 8) ?? "0000000000000000",
                    balance: YKCDecimal(units: 0, scale: 2), authResult: .failed, failureReason: .pileDisabled,
                    parallelSerial: r.parallelSerial))
        default:
            return nil
        }
    }

    /// Charging opens a transaction on a gun (a charging 0x13 or a start reply with a serial);
    /// its bill (0x3B) or an idle 0x13 closes it.
    private func trackTransactions(_ message: YKCMessage) {
        switch message {
        case .realtimeData(let rt):
            if rt.status == .charging && !rt.tradeSerial.isZero {
                openTransactions[rt.gun] = rt.tradeSerial
            } else if rt.status == .idle || rt.status == .offline {
                openTransactions[rt.gun] = nil
            }
        case .remoteStartReply(let r) where r.result == .started:
            openTransactions[r.gun] = r.tradeSerial
        case .transactionRecord(let t):
            if openTransactions[t.gun] == t.tradeSerial || openTransactions[t.gun] != nil { openTransactions[t.gun] = nil }
        default:
            break
        }
    }

    /// A changed rule reaches an idle session: re-decide its lane (never during a transaction).
    private func reconsiderLane(context: ChannelHandlerContext) {
        guard var info = session else { return }
        let version = gateway.sink.laneRulesVersion
        guard version != laneVersion else { return }
        laneVersion = version
        let lane = gateway.sink.lane(for: info.login, remoteHost: info.remoteHost)
        guard lane != info.lane else { return }
        gateway.logger.info(
            "session moved to a new lane after a rule change",
            metadata: ["pile": "\(info.pileId)", "from": "\(info.lane)", "to": "\(lane)", "connection": "\(connectionId)"])
        info.lane = lane
        let moved = PileSessionHandle(info: info, channel: context.channel)
        handle = moved
        gateway.directory.update(moved)
    }

    private func trackGun(_ gun: GunNumber, _ update: (inout GunTrack) -> Void) {
        if let i = guns.firstIndex(where: { $0.gun == gun }) {
            update(&guns[i])
        } else if guns.count < 64 {
            var t = GunTrack(gun: gun, state: .normal, lastHeartbeat: nil, status: nil)
            update(&t)
            guns.append(t)
        }
    }

    // MARK: commands

    /// Replies the pile sends to platform commands (docs/ykc/PROTOCOL-FACTS.md §5.7).
    static let replyCode: [UInt8: UInt8] = [
        0x12: 0x13, 0x34: 0x33, 0x36: 0x35, 0x42: 0x41, 0x44: 0x43, 0x46: 0x45, 0x48: 0x47, 0x52: 0x51,
        0x56: 0x55, 0x58: 0x57, 0x62: 0x63, 0x92: 0x91, 0x94: 0x93, 0xA4: 0xA3, 0xF0: 0xF1,
    ]

    private func startRequest(context: ChannelHandlerContext, message: YKCMessage, timeout: TimeAmount, promise: EventLoopPromise<YKCMessage>) {
        guard let replyCode = Self.replyCode[message.code] else {
            promise.fail(PileCommandError.invalidArguments("frame 0x\(String(message.code, radix: 16)) expects no reply"))
            return
        }
        guard !pendingCommands.isFull else {
            gateway.counters.commandsRefused.wrappingIncrement(ordering: .relaxed)
            promise.fail(
                PileCommandError.tooManyCommands(
                    "pile \(machine.pileId?.description ?? "?") already has \(pendingCommands.limit) commands waiting for its reply (maxCommandsPerPile)"))
            return
        }
        let sequence = writePlatformFrame(context: context, message: message)
        let deadline = NIODeadline.now() + timeout
        _ = pendingCommands.add(replyCode: replyCode, sequence: sequence, gun: message.gun, deadline: deadline, token: promise)
        armCommandTimer(context: context, for: deadline)
    }

    /// One timer per session, for the earliest command deadline.
    private func armCommandTimer(context: ChannelHandlerContext, for deadline: NIODeadline) {
        if let armed = commandTimerDeadline, armed <= deadline, commandTimer != nil { return }
        commandTimer?.cancel()
        commandTimerDeadline = deadline
        commandTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            commandTimer = nil
            commandTimerDeadline = nil
            for promise in pendingCommands.expire(now: .now()) { promise.fail(PileCommandError.timeout) }
            if let next = pendingCommands.earliestDeadline, let ctx = self.context { armCommandTimer(context: ctx, for: next) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let command = event as? SessionCommand {
            switch command {
            case .close(let reason):
                close(context: context, reason: reason)
            case .send(let message, let promise):
                guard closeReason == nil else { return promise.fail(PileCommandError.pileOffline) }
                promise.succeed(writePlatformFrame(context: context, message: message))
            case .request(let message, let timeout, let promise):
                guard closeReason == nil, machine.isOnline else { return promise.fail(PileCommandError.pileOffline) }
                startRequest(context: context, message: message, timeout: timeout, promise: promise)
            case .reply(let message, let sequence):
                guard closeReason == nil else { return }
                writeMessage(context: context, message: message, sequence: sequence)
            case .inspect(let promise):
                promise.succeed(liveState())
            }
            return
        }
        if let q = event as? ChannelShouldQuiesceEvent {
            _ = q
            close(context: context, reason: .shutdown)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: liveness (called by the loop's sweeper)

    func isExpired(now: NIODeadline) -> Bool {
        guard closeReason == nil else { return false }
        if let loginDeadline { return now >= loginDeadline }
        return now - lastActivity >= TimeAmount.fromSeconds(gateway.config.livenessTimeout)
    }

    func expire() {
        guard let ctx = context else { return }
        let reason: OfflineReason = loginDeadline == nil ? .livenessTimeout : .loginTimeout
        gateway.logger.debug("connection expired", metadata: ["connection": "\(connectionId)", "reason": "\(reason.rawValue)"])
        close(context: ctx, reason: reason)
    }

    private func liveState() -> PileLiveState {
        let wallNow = Date()
        let monoNow = NIODeadline.now()
        return PileLiveState(
            guns: guns.map {
                .init(gun: $0.gun.number, state: $0.state.name ?? "\($0.state.rawValue)", lastHeartbeat: $0.lastHeartbeat, status: $0.status?.name)
            },
            framesIn: framesIn, framesOut: framesOut,
            lastFrameAt: lastFrameAt.map { wallNow.addingTimeInterval(-Double((monoNow - $0).nanoseconds) / 1e9) })
    }

    // MARK: outbound

    private func writeMessage(context: ChannelHandlerContext, message: YKCMessage, sequence: YKCSequence) {
        writeReply(context: context, code: message.code, sequence: sequence) { message.encodeBody(into: &$0) }
    }

    /// Writes a platform-originated frame with the next sequence number (little-endian counter,
    /// docs/ykc/PROTOCOL-FACTS.md §1.2); returns the sequence used.
    @discardableResult
    private func writePlatformFrame(context: ChannelHandlerContext, message: YKCMessage) -> YKCSequence {
        platformSequence &+= 1
        let sequence = YKCSequence(counter: platformSequence)
        writeMessage(context: context, message: message, sequence: sequence)
        return sequence
    }

    private func writeReply(
        context: ChannelHandlerContext, code: UInt8, sequence: YKCSequence, body: (inout ByteBuffer) -> Void
    ) {
        var buffer = context.channel.allocator.buffer(capacity: 64)
        if encryptOutgoing, let pileId = machine.pileId, let cipher = currentCipher(pileId) {
            // A pile that encrypts gets encrypted frames: the body is built aside, then sealed.
            var plain = context.channel.allocator.buffer(capacity: 64)
            body(&plain)
            do {
                let sealed = try cipher.encrypt(Array(plain.readableBytesView))
                YKCFrame.write(sequence: sequence, encryption: FrameCipher.encryptedFlag, code: code, into: &buffer) {
                    $0.writeBytes(sealed)
                }
                gateway.counters.encryptedOut.wrappingIncrement(ordering: .relaxed)
            } catch {
                gateway.logger.warning(
                    "frame to pile not sent: its body cannot be encrypted",
                    metadata: ["connection": "\(connectionId)", "pile": "\(pileId)", "code": "\(GatewayCounters.typeLabel(code))", "error": "\(error)"])
                return
            }
        } else {
            YKCFrame.write(sequence: sequence, code: code, into: &buffer, writeBody: body)
        }
        framesOut += 1
        gateway.counters.frameOut(code: code, bytes: buffer.readableBytes)
        if inReadBatch {
            // Replies produced while handling a read go out with one flush at channelReadComplete:
            // a pile's per-gun heartbeats then cost one write syscall, not one each.
            context.write(wrapOutboundOut(buffer), promise: nil)
            needsFlush = true
        } else {
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadBatch = false
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
    }

    // MARK: backpressure

    func read(context: ChannelHandlerContext) {
        if readPaused {
            pendingRead = true
        } else {
            context.read()
        }
    }

    private func updateReadPause() {
        let shouldPause = throttlePaused || writePaused
        guard shouldPause != readPaused else { return }
        readPaused = shouldPause
        if !readPaused && pendingRead, let ctx = context {
            pendingRead = false
            ctx.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            writePaused = false
            slowReaderTimer?.cancel()
            slowReaderTimer = nil
        } else {
            // The pile is not reading what we send: stop reading its requests (so we stop
            // producing replies) and give it a while to catch up.
            writePaused = true
            gateway.counters.slowReaderEpisodes.wrappingIncrement(ordering: .relaxed)
            let timeout = TimeAmount.fromSeconds(gateway.config.slowReaderTimeout)
            slowReaderTimer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
                guard let ctx = self.context else { return }
                gateway.logger.notice(
                    "closing slow reader", metadata: ["connection": "\(connectionId)", "address": "\(remoteAddress)"])
                close(context: ctx, reason: .slowReader)
            }
        }
        updateReadPause()
        context.fireChannelWritabilityChanged()
    }

    private func close(context: ChannelHandlerContext, reason: OfflineReason) {
        guard closeReason == nil else { return }
        closeReason = reason
        // Flush what is queued (a rejection's 0x02), then close.
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        context.close(promise: nil)
    }
}

/// Why a command to a pile failed.
public enum PileCommandError: Error, Equatable, Sendable, CustomStringConvertible {
    case pileOffline
    case timeout
    case invalidArguments(String)
    case forbidden(String)
    /// The pile (or the sending socket) has as many commands waiting as it may.
    case tooManyCommands(String)

    /// The stable error code of the backend API.
    public var code: String {
        switch self {
        case .pileOffline: "pile_offline"
        case .timeout: "timeout"
        case .invalidArguments: "invalid_args"
        case .forbidden: "forbidden"
        case .tooManyCommands: "too_many_commands"
        }
    }

    public var description: String {
        switch self {
        case .pileOffline: "the pile is not online on this gateway"
        case .timeout: "the pile did not answer in time"
        case .invalidArguments(let m): m
        case .forbidden(let m): m
        case .tooManyCommands(let m): m
        }
    }
}
