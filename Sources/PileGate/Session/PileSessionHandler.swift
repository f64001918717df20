import Foundation
import Logging
import NIOCore
import YKC
import YKCCipher

/// One pile connection's I/O: it parses the bytes as they arrive, feeds each event to the session
/// state machine (`PileSessionStateMachine`, which holds every decision and all the session's
/// state), and runs the actions it returns — reads, writes, timers, closing, and the calls out to
/// admission, the session directory, the registry and the event sink. It answers what the gateway
/// answers alone (login, per-gun heartbeats, time sync) and hands the rest to the event sink.
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
    /// The start of a frame split across reads (at most one frame, ≤ 259 bytes: the parser
    /// skips garbage and waits only for a frame's announced length); nil when nothing is pending.
    private var partial: PileSplitFrame?
    private typealias Machine = PileSessionStateMachine<EventLoopPromise<YKCMessage>>
    private var machine: Machine
    private var context: ChannelHandlerContext?

    private var connectionId: UInt64 = 0
    private var remoteHost = "?"
    /// "host:port", built when a log line or the session info needs it (not stored twice).
    private var remoteAddress: String { remotePort < 0 ? remoteHost : "\(remoteHost):\(remotePort)" }
    private var side: PileSessionSideState?

    /// Before login, when the connection became active; from login on, the session, shared with
    /// the session directory (one copy of the session info per pile, not one here and one there),
    /// whose info holds the connection time. One field for the two.
    private enum Phase {
        case connected(at: Date)
        case loggedIn(PileSessionHandle)
    }
    private var phase = Phase.connected(at: Date())
    private var handle: PileSessionHandle? {
        if case .loggedIn(let handle) = phase { return handle }
        return nil
    }
    private var session: PileSessionInfo? { handle?.info }
    private var connectedAt: Date {
        switch phase {
        case .connected(let at): at
        case .loggedIn(let handle): handle.info.connectedAt
        }
    }

    // The small fields together, after `phase` (Swift lays a class's stored properties out in
    // declaration order, each right after the previous one's size): `phase` is 9 bytes, and the
    // three flags and the port fill the rest of its second word.
    /// True between a channelRead and its channelReadComplete: writes are flushed once at the end.
    private var inReadBatch = false
    private var needsFlush = false
    /// Registered with the event loop's `LivenessSweeper` (looked up again at close rather than
    /// kept: one reference less per pile).
    private var watched = false
    /// The pile's source port; -1 when the channel has no remote address.
    private var remotePort: Int32 = -1

    /// Frame encryption, from the pile's first encrypted frame on.
    private var encryption: PileEncryptionState? { side?.encryption }

    init(gateway: GatewayContext) {
        self.gateway = gateway
        machine = PileSessionStateMachine(limits: gateway.sessionLimits)
    }

    private var sideState: PileSessionSideState {
        if let side { return side }
        let made = PileSessionSideState()
        side = made
        return made
    }

    private var encryptionState: PileEncryptionState {
        if let encryption { return encryption }
        let made = PileEncryptionState()
        sideState.encryption = made
        return made
    }

    // MARK: running the machine's actions

    private func run(_ action: Machine.Action, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case .read:
            context.read()
        case .watchLiveness:
            watched = true
            gateway.liveness.sweeper(for: context.eventLoop).add(connectionId, self)
        case .closeConnection(_, let flush):
            // Flush what is queued (a rejection's 0x02), then close.
            if flush && needsFlush {
                needsFlush = false
                context.flush()
            }
            context.close(promise: nil)
        case .pauseReading(let pause):
            gateway.counters.throttleEpisodes.wrappingIncrement(ordering: .relaxed)
            gateway.logger.info(
                "pile over its rate limit: pausing reads",
                metadata: [
                    "connection": "\(connectionId)", "address": "\(remoteAddress)",
                    "pile": "\(machine.pileId?.description ?? "-")", "pause_ms": "\(pause.nanoseconds / 1_000_000)",
                ])
            context.eventLoop.assumeIsolated().scheduleTask(in: pause) { [self] in
                guard let ctx = self.context else { return }
                run(machine.throttlePauseEnded(), context: ctx)
            }
        case .startSlowReaderTimer:
            gateway.counters.slowReaderEpisodes.wrappingIncrement(ordering: .relaxed)
            let timeout = TimeAmount.fromSeconds(gateway.config.slowReaderTimeout)
            sideState.slowReader = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
                guard let ctx = self.context else { return }
                let action = machine.slowReaderTimedOut()
                if action != .none {
                    gateway.logger.notice(
                        "closing slow reader", metadata: ["connection": "\(connectionId)", "address": "\(remoteAddress)"])
                }
                run(action, context: ctx)
            }
        case .cancelSlowReaderTimer(let read):
            side?.slowReader?.cancel()
            side?.slowReader = nil
            if read { context.read() }
        }
    }

    // MARK: lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        connectionId = gateway.acceptOrder.take(context.channel)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        // The handle holds the channel: no cycle left behind once the pipeline is torn down.
        phase = .connected(at: connectedAt)
    }

    func channelActive(context: ChannelHandlerContext) {
        phase = .connected(at: Date())
        if let remote = context.channel.remoteAddress {
            remoteHost = remote.ipAddress ?? "?"
            remotePort = Int32(clamping: remote.port ?? 0)
        }
        // Admission is asked only when the gateway is not shutting down (it counts the connection).
        let refusal: OfflineReason? =
            gateway.shuttingDown.load(ordering: .relaxed)
            ? .shutdown : gateway.admission.admit(host: remoteHost) != nil ? .admissionRefused : nil
        run(machine.channelActive(refusal: refusal, now: .now()), context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let ending = machine.channelInactive()
        if ending.countTrailingInput { countTrailingInput() }
        partial = nil
        var reason = ending.reason
        if watched {
            watched = false
            gateway.liveness.sweeper(for: context.eventLoop).remove(connectionId)
        }
        side?.slowReader?.cancel()
        side?.command?.cancel()
        side?.slowReader = nil
        side?.command = nil
        for promise in ending.abandonedCommands { promise.fail(PileCommandError.pileOffline) }
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
                machine.replacedOnClose()
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
        if ending.releaseAdmission {
            gateway.admission.released(host: remoteHost, wasPending: ending.wasPending)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Connection resets are the pile going away; anything else is worth a debug line.
        let action = machine.errorCaught(isReset: isReset(error))
        gateway.logger.debug("pile connection error", metadata: ["connection": "\(connectionId)", "error": "\(error)"])
        run(action, context: context)
    }

    private func isReset(_ error: any Error) -> Bool {
        if let e = error as? IOError { return e.errnoCode == ECONNRESET || e.errnoCode == EPIPE }
        return false
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard machine.isActive else { return }
        // The parser keeps no state between calls but its own counters, which the gateway does not
        // use (it counts in GatewayCounters): a fresh one per read costs nothing, a stored one 64 bytes.
        var parser = YKCFrameParser()
        var bytes = unwrapInboundIn(data)
        // Set when `bytes` is our own buffer (a split frame's start with this read appended),
        // not NIO's receive buffer: the box it came from, to keep what is still incomplete.
        var pendingBox: PileSplitFrame?
        if let box = partial, var pending = box.bytes {
            box.bytes = nil  // `pending` is now the only reference: appending does not copy
            partial = nil
            pending.writeBuffer(&bytes)
            bytes = pending
            pendingBox = box
        }
        inReadBatch = true
        while machine.isActive, let event = parser.next(&bytes) {
            handle(context: context, event: event)
        }
        if machine.isActive, bytes.readableBytes > 0 {
            guard bytes.readableBytes <= YKCFrameParser.maximumFrameSize else {
                // Cannot happen with the parser's rules; a hard bound all the same.
                malformed(context: context, error: .truncated(have: bytes.readableBytes, need: YKCFrameParser.maximumFrameSize))
                close(context: context, reason: .malformedInput)
                return
            }
            if let pendingBox {
                // Already ours (a frame arriving over several reads, as any frame larger than the
                // receive buffer does): kept, its consumed bytes dropped so it never grows.
                bytes.discardReadBytes()
                pendingBox.bytes = bytes
                partial = pendingBox
                return
            }
            // A copy, not a slice: a slice would keep NIO's receive buffer shared, so its next
            // read in the same batch would allocate a second buffer, which the channel's buffer
            // pool then keeps for the connection's life. Sized for the whole frame its length
            // byte announces, so the reads that complete it append without reallocating.
            let announced = bytes.getInteger(at: bytes.readerIndex + 1, as: UInt8.self).map { Int($0) + 4 } ?? 0
            var copy = context.channel.allocator.buffer(capacity: max(bytes.readableBytes, announced))
            copy.writeBuffer(&bytes)
            partial = PileSplitFrame(copy)
        }
    }

    /// Whatever was left of a frame when the pile closed is counted as truncated input.
    private func countTrailingInput() {
        guard var rest = partial?.bytes else { return }
        partial = nil
        var parser = YKCFrameParser()
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
            let charged = machine.frameArrived(bytes: size, now: now)
            if case .closeConnection = charged {
                logRateLimitClose()
                run(charged, context: context)
                return
            }
            run(charged, context: context)
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
            switch machine.frameReceived(message, now: now, laneRulesVersion: self.gateway.sink.laneRulesVersion) {
            case .decideLogin(let login):
                beginLogin(context: context, login: login, frame: frame)
            case .reconfirmLogin:
                writeReply(context: context, code: LoginReply.code, sequence: frame.sequence) {
                    LoginReply(pileId: self.machine.pileId ?? PileID(raw: 0), result: .accepted).encode(into: &$0)
                }
            case .ignore:
                break
            case .process(let redecideLane):
                if redecideLane { redecideLaneAfterRuleChange(context: context) }
                process(context: context, message: message, frame: frame)
            case .refuse(let r):
                countRefusal(r, code: frame.code)
            case .refuseAndClose(let r):
                countRefusal(r, code: frame.code)
                run(.closeConnection(.refusedFrames, flush: true), context: context)
            }
        }
    }

    private func countRefusal(_ r: Machine.Refusal, code: UInt8) {
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
            let state = encryptionState
            state.cipher = found
            state.cipherVersion = version
            state.encryptOutgoing = true
            return plain
        }
        guard let cipher = currentCipher(pileId) else {
            refuseEncrypted(context: context, frame: frame, reason: .noKey, detail: "the pile has no frame key")
            return nil
        }
        do {
            let plain = try cipher.decrypt(frame: frame)
            encryptionState.encryptOutgoing = true
            return plain
        } catch {
            refuseEncrypted(context: context, frame: frame, reason: .undecryptable, detail: error.description)
            return nil
        }
    }

    /// The pile's key, looked up again only when a key was set or removed since the last look.
    private func currentCipher(_ pileId: PileID) -> FrameCipher? {
        let state = encryptionState
        let version = gateway.keys.version
        if version != state.cipherVersion {
            state.cipherVersion = version
            state.cipher = gateway.keys.cipher(for: pileId)
        }
        return state.cipher
    }

    private func refuseEncrypted(context: ChannelHandlerContext, frame: YKCFrame, reason: EncryptedRefusal, detail: String) {
        switch reason {
        case .noKey: gateway.counters.refusedEncryptedNoKey.wrappingIncrement(ordering: .relaxed)
        case .undecryptable: gateway.counters.refusedUndecryptable.wrappingIncrement(ordering: .relaxed)
        }
        let level: Logger.Level = encryptionState.loggedRefusal ? .debug : .warning
        encryptionState.loggedRefusal = true
        gateway.logger.log(
            level: level, "encrypted frame refused",
            metadata: [
                "connection": "\(connectionId)", "address": "\(remoteAddress)", "pile": "\(machine.pileId?.description ?? "-")",
                "code": "\(GatewayCounters.typeLabel(frame.code))", "reason": "\(reason.rawValue)", "detail": "\(detail)",
            ])
        run(machine.malformed(), context: context)
    }

    private func malformed(context: ChannelHandlerContext, error: YKCFrameError) {
        gateway.counters.malformed[error.kind]?.wrappingIncrement(ordering: .relaxed)
        var bytes = 1
        if case .garbage(let n) = error {
            bytes = n
            gateway.counters.garbageBytes.wrappingIncrement(by: n, ordering: .relaxed)
        }
        let charged = machine.charge(bytes: bytes, frames: 0, now: .now())
        if case .closeConnection = charged { logRateLimitClose() }
        run(charged, context: context)
        guard machine.isActive else { return }
        let action = machine.malformed()
        if action != .none {
            gateway.logger.notice(
                "closing connection sending malformed input",
                metadata: [
                    "connection": "\(connectionId)", "address": "\(remoteAddress)",
                    "pile": "\(machine.pileId?.description ?? "-")", "last": "\(error)",
                ])
        }
        run(action, context: context)
    }

    private func logRateLimitClose() {
        gateway.counters.throttleEpisodes.wrappingIncrement(ordering: .relaxed)
        gateway.logger.notice(
            "closing connection over its rate limit",
            metadata: ["connection": "\(connectionId)", "address": "\(remoteAddress)", "pile": "\(machine.pileId?.description ?? "-")"])
    }

    // MARK: login

    private func beginLogin(context: ChannelHandlerContext, login: Login, frame: YKCFrame) {
        guard PileCertificateBinding.permits(login.pileId, context: context, gateway: gateway) else {
            finishLogin(context: context, login: login, sequence: frame.sequence, accepted: false, reason: .certificateMismatch)
            return
        }
        guard gateway.admission.pileMayLogin(login.pileId.description) else {
            gateway.counters.refused[.pileBanned]?.wrappingIncrement(ordering: .relaxed)
            finishLogin(context: context, login: login, sequence: frame.sequence, accepted: false, reason: .admissionRefused)
            return
        }
        let delay = gateway.admission.loginDelay()
        if delay > .zero {
            gateway.counters.loginsDeferred.wrappingIncrement(ordering: .relaxed)
            context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
                guard let ctx = self.context, machine.isActive else { return }
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
        machine.overrideRates(
            PileRates(
                frameRate: o.frameRatePerSecond ?? c.frameRatePerSecond, frameBurst: o.frameBurst ?? c.frameBurst,
                byteRate: o.byteRatePerSecond ?? c.byteRatePerSecond, byteBurst: o.byteBurst ?? c.byteBurst),
            now: .now())
    }

    private func decideLogin(context: ChannelHandlerContext, login: Login, sequence: YKCSequence) {
        // A full registry takes no new pile ids, whatever the policy (`registryMaxPiles`).
        let registry = gateway.registry
        guard registry.isKnown(login.pileId) || registry.knownCount < gateway.config.registryMaxPiles else {
            gateway.counters.refusedRegistryFull.wrappingIncrement(ordering: .relaxed)
            gateway.logger.debug(
                "login refused: the registry is full (registryMaxPiles)",
                metadata: ["pile": "\(login.pileId)", "address": "\(remoteAddress)", "connection": "\(connectionId)"])
            finishLogin(context: context, login: login, sequence: sequence, accepted: false)
            return
        }
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
                guard let ctx = self.context, machine.isActive else { return }
                let answer = (try? result.get()) ?? nil
                finishLogin(context: ctx, login: login, sequence: sequence, accepted: answer ?? fallback)
            }
        }
    }

    private func finishLogin(
        context: ChannelHandlerContext, login: Login, sequence: YKCSequence, accepted: Bool,
        reason: OfflineReason = .loginRejected, tookOver: Bool = false
    ) {
        // Cluster mode: another node holding the pile closes its session first (its pile_offline
        // before this one's pile_online); bounded by the sink.
        if accepted, !tookOver, let closing = gateway.sink.takeOver(login.pileId, on: context.eventLoop) {
            closing.assumeIsolated().whenComplete { [self] _ in
                guard let ctx = self.context, machine.isActive else { return }
                finishLogin(context: ctx, login: login, sequence: sequence, accepted: true, tookOver: true)
            }
            return
        }
        let decision = machine.loginDecided(accepted: accepted, reason: reason)
        guard decision != .none else { return }
        writeReply(context: context, code: LoginReply.code, sequence: sequence) {
            LoginReply(pileId: login.pileId, result: accepted ? .accepted : .rejected).encode(into: &$0)
        }
        guard case .accepted = decision else {
            gateway.counters.loginsRejected.wrappingIncrement(ordering: .relaxed)
            gateway.logger.debug(
                "login rejected", metadata: ["pile": "\(login.pileId)", "address": "\(remoteAddress)", "connection": "\(connectionId)"])
            run(.closeConnection(reason, flush: true), context: context)
            return
        }
        applyLimitOverride(for: login.pileId)
        gateway.admission.loggedIn()
        machine.laneDecided(rulesVersion: gateway.sink.laneRulesVersion)
        let lane = gateway.sink.lane(for: login, remoteHost: remoteHost)
        let info = PileSessionInfo(
            connectionId: connectionId, pileId: login.pileId, remoteAddress: remoteAddress, remoteHost: remoteHost,
            login: login, lane: lane, connectedAt: connectedAt, loggedInAt: Date())
        gateway.counters.loginsAccepted.wrappingIncrement(ordering: .relaxed)
        gateway.counters.sessionOnline()
        let handle = PileSessionHandle(info: info, channel: context.channel)
        phase = .loggedIn(handle)
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
        guard let session else { return }
        if case .heartbeat(let hb) = message {
            gateway.counters.heartbeats.wrappingIncrement(ordering: .relaxed)
            writeReply(context: context, code: HeartbeatReply.code, sequence: frame.sequence) {
                HeartbeatReply(pileId: hb.pileId, gun: hb.gun, reply: 0).encode(into: &$0)
            }
            if gateway.sink.wants(code: frame.code) {
                gateway.sink.frameReceived(message, frame: frame, session: session, receivedAt: Date())
            }
            return
        }
        if let waiting = machine.commandReplyReceived(code: frame.code, sequence: frame.sequence, gun: message.gun) {
            waiting.succeed(message)
            // A reply to a command: the command's caller gets it; backends still get the event.
            if gateway.sink.wants(code: frame.code) {
                gateway.sink.frameReceived(message, frame: frame, session: session, receivedAt: Date())
            }
            return
        }
        if PileReplyCodes.pileRequests.contains(frame.code) {
            let promise = context.eventLoop.makePromise(of: YKCMessage?.self)
            let sequence = frame.sequence
            gateway.sink.request(message, frame: frame, session: session, receivedAt: Date(), respond: promise)
            promise.futureResult.assumeIsolated().whenComplete { [self] result in
                guard let ctx = self.context, machine.isActive else { return }
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

    /// A changed rule reaches an idle session (the machine asks only when no transaction is open):
    /// decide its lane again.
    private func redecideLaneAfterRuleChange(context: ChannelHandlerContext) {
        guard var info = session else { return }
        let lane = gateway.sink.lane(for: info.login, remoteHost: info.remoteHost)
        guard lane != info.lane else { return }
        gateway.logger.info(
            "session moved to a new lane after a rule change",
            metadata: ["pile": "\(info.pileId)", "from": "\(info.lane)", "to": "\(lane)", "connection": "\(connectionId)"])
        info.lane = lane
        let moved = PileSessionHandle(info: info, channel: context.channel)
        phase = .loggedIn(moved)
        gateway.directory.update(moved)
    }

    // MARK: commands

    private func startRequest(context: ChannelHandlerContext, message: YKCMessage, timeout: TimeAmount, promise: EventLoopPromise<YKCMessage>) {
        switch machine.commandRequested(code: message.code, gun: message.gun, deadline: .now() + timeout, token: promise) {
        case .fail(let promise, let error):
            if case .tooManyCommands = error { gateway.counters.commandsRefused.wrappingIncrement(ordering: .relaxed) }
            promise.fail(error)
        case .send(let sequence, let armTimer):
            writeMessage(context: context, message: message, sequence: sequence)
            if let deadline = armTimer { armCommandTimer(context: context, for: deadline) }
        }
    }

    /// One timer per session, for the earliest command deadline (the machine says when).
    private func armCommandTimer(context: ChannelHandlerContext, for deadline: NIODeadline) {
        let timers = sideState
        timers.command?.cancel()
        timers.command = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            side?.command = nil
            let timeouts = machine.commandTimerFired(now: .now())
            for promise in timeouts.expired { promise.fail(PileCommandError.timeout) }
            if let next = timeouts.rearm, let ctx = self.context { armCommandTimer(context: ctx, for: next) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let command = event as? SessionCommand {
            switch command {
            case .close(let reason):
                close(context: context, reason: reason)
            case .send(let message, let promise):
                guard let sequence = machine.platformFrameRequested() else { return promise.fail(PileCommandError.pileOffline) }
                writeMessage(context: context, message: message, sequence: sequence)
                promise.succeed(sequence)
            case .request(let message, let timeout, let promise):
                guard machine.isActive else { return promise.fail(PileCommandError.pileOffline) }
                startRequest(context: context, message: message, timeout: timeout, promise: promise)
            case .reply(let message, let sequence):
                guard machine.isActive else { return }
                writeMessage(context: context, message: message, sequence: sequence)
            case .inspect(let promise):
                promise.succeed(liveState())
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: liveness (called by the loop's sweeper)

    func isExpired(now: NIODeadline) -> Bool {
        machine.isExpired(now: now)
    }

    /// Closes the connection (the sweeper's shutdown of every connection on its loop).
    func close(reason: OfflineReason) {
        guard let ctx = context else { return }
        close(context: ctx, reason: reason)
    }

    func expire() {
        guard let ctx = context else { return }
        let action = machine.expired()
        if case .closeConnection(let reason, _) = action {
            gateway.logger.debug("connection expired", metadata: ["connection": "\(connectionId)", "reason": "\(reason.rawValue)"])
        }
        run(action, context: ctx)
    }

    private func liveState() -> PileLiveState {
        let wallNow = Date()
        let monoNow = NIODeadline.now()
        func wall(_ t: NIODeadline) -> Date { wallNow.addingTimeInterval(-Double((monoNow - t).nanoseconds) / 1e9) }
        return PileLiveState(
            guns: machine.guns.guns.map {
                .init(gun: $0.gun.number, state: $0.state.name ?? "\($0.state.rawValue)", lastHeartbeat: $0.lastHeartbeat.map(wall), status: $0.status?.name)
            },
            framesIn: machine.framesIn, framesOut: machine.framesOut, lastFrameAt: machine.lastFrameAt.map(wall))
    }

    // MARK: outbound

    private func writeMessage(context: ChannelHandlerContext, message: YKCMessage, sequence: YKCSequence) {
        writeReply(context: context, code: message.code, sequence: sequence) { message.encodeBody(into: &$0) }
    }

    /// Writes a platform-originated frame with the next sequence number; returns the sequence used.
    @discardableResult
    private func writePlatformFrame(context: ChannelHandlerContext, message: YKCMessage) -> YKCSequence? {
        guard let sequence = machine.platformFrameRequested() else { return nil }
        writeMessage(context: context, message: message, sequence: sequence)
        return sequence
    }

    private func writeReply(
        context: ChannelHandlerContext, code: UInt8, sequence: YKCSequence, body: (inout ByteBuffer) -> Void
    ) {
        var buffer = context.channel.allocator.buffer(capacity: 64)
        if let encryption, encryption.encryptOutgoing, let pileId = machine.pileId, let cipher = currentCipher(pileId) {
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
        machine.frameSent()
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
        run(machine.readRequested(), context: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        run(machine.writabilityChanged(isWritable: context.channel.isWritable), context: context)
        context.fireChannelWritabilityChanged()
    }

    private func close(context: ChannelHandlerContext, reason: OfflineReason) {
        run(machine.closeRequested(reason), context: context)
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
