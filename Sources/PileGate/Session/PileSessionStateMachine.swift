import NIOCore
import YKC

/// Everything one pile connection knows and decides, apart from any I/O: login order and deadline,
/// the frame and byte buckets with their throttle pauses, read backpressure (throttle and slow
/// reader), malformed and refused frame limits, close reasons, open transactions and lane
/// re-decision, the gun table, and the commands waiting for the pile's reply (`PendingCommands`).
/// It is packed (docs/BENCHMARKS.md, "Memory per pile"): what only some sessions need — waiting
/// commands — is allocated when needed, counts are 32-bit, and the limits and rates are shared.
/// One mutating function per event; each returns what the handler must do (the actions in
/// `PileSessionStateMachine+Action.swift`). `PileSessionHandler` only does the I/O and runs them.
///
/// Protocol rules (docs/ykc/PROTOCOL-FACTS.md §5.1): the first frame must be a login; nothing else is
/// accepted until the login is decided; frames carrying another pile's id are refused; malformed
/// input, refused frames and throttle episodes end the connection past their limits.
///
/// ```
/// idle ─active─▶ awaitingLogin ─login─▶ decidingLogin ─accepted─▶ online
///   │                 │                      │ rejected                │
///   └─────────────────┴──── close requested (reason) ─────────────────┴─▶ closing ─inactive─▶ closed
/// ```
///
/// `CommandToken` is what a waiting command is answered through (an `EventLoopPromise` in the
/// handler, a plain value in tests).
struct PileSessionStateMachine<CommandToken> {
    enum State: Equatable {
        /// Created; the channel is not active yet.
        case idle
        /// Admitted; the first frame must be a login before `deadline`.
        case awaitingLogin(deadline: NIODeadline)
        /// A login of this pile is being decided (policy, backend); still bound by the login deadline.
        case decidingLogin(PileID, deadline: NIODeadline)
        case online(PileID)
        /// A close was requested with this reason; waiting for the channel to go inactive.
        case closing(OfflineReason)
        case closed(OfflineReason)
    }

    private(set) var state: State = .idle
    let limits: PileSessionLimits

    // Input limits. Counts saturate; times use `Self.never` for "not yet" (no optional's padding).
    private(set) var malformedCount: UInt32 = 0
    private(set) var refusedCount: UInt32 = 0
    private var throttleCount: UInt32 = 0
    private var throttleWindowStart = Self.never
    private var buckets: PileRateBuckets

    // Read backpressure: reads are held while either pause holds.
    private var throttlePaused = false
    private var writePaused = false
    private var pendingRead = false

    private(set) var admitted = false
    private(set) var loggedIn = false
    /// Time of the last complete frame (liveness); set at admission.
    private(set) var lastActivity: NIODeadline
    private var lastFrame = Self.never
    private var framesInCount: UInt32 = 0
    private var framesOutCount: UInt32 = 0

    /// Lane rules version the session's lane was decided under.
    private var laneVersion = 0
    /// Guns with an open charging transaction (by trade serial), which pins the lane.
    private(set) var openTransactions: [GunNumber: TradeSerial] = [:]
    private(set) var guns = PileGunTable()

    private var platformSequence: UInt16 = 0
    /// Commands waiting for the pile's reply; allocated at the first command, dropped when none
    /// waits and no timer is armed.
    private var commands: PileCommandQueue<CommandToken>?

    /// "Not yet" for the times above (uptime zero is never a real `now`).
    static var never: NIODeadline { .uptimeNanoseconds(0) }

    init(limits: PileSessionLimits, now: NIODeadline = .now()) {
        self.limits = limits
        self.buckets = PileRateBuckets(rates: limits.rates, now: now)
        self.lastActivity = now
    }

    // MARK: queries

    var pileId: PileID? {
        switch state {
        case .decidingLogin(let p, _), .online(let p): p
        default: nil
        }
    }

    var isOnline: Bool {
        if case .online = state { return true }
        return false
    }

    /// False once a close was requested: nothing more is read, written or decided.
    var isActive: Bool {
        switch state {
        case .closing, .closed: false
        default: true
        }
    }

    /// Why the connection is closing or closed.
    var closeReason: OfflineReason? {
        switch state {
        case .closing(let r), .closed(let r): r
        default: nil
        }
    }

    var readPaused: Bool { throttlePaused || writePaused }
    var waitingCommands: Int { commands?.pending.count ?? 0 }
    var lastFrameAt: NIODeadline? { lastFrame == Self.never ? nil : lastFrame }
    var framesIn: Int { Int(framesInCount) }
    var framesOut: Int { Int(framesOutCount) }
    /// The frame and byte rates in force (the configured ones, or the pile's own).
    var rates: PileRates { buckets.rates }

    /// Before login, the login deadline has passed; after it, nothing complete arrived within the
    /// liveness timeout. Asked by the loop's sweeper.
    func isExpired(now: NIODeadline) -> Bool {
        switch state {
        case .awaitingLogin(let deadline), .decidingLogin(_, let deadline): now >= deadline
        case .online: now - lastActivity >= limits.livenessTimeout
        case .idle, .closing, .closed: false
        }
    }

    // MARK: connection events

    /// The channel became active; `refusal` is `.shutdown` or `.admissionRefused` when it may not stay.
    mutating func channelActive(refusal: OfflineReason?, now: NIODeadline) -> Action {
        guard case .idle = state else { return .none }
        if let refusal {
            state = .closing(refusal)
            // A connection refused at admission has nothing queued; shutdown goes the usual way.
            return .closeConnection(refusal, flush: refusal != .admissionRefused)
        }
        admitted = true
        lastActivity = now
        state = .awaitingLogin(deadline: now + limits.loginTimeout)
        return .watchLiveness
    }

    /// Someone (the gateway, an operator, a newer login) asks the connection to close.
    mutating func closeRequested(_ reason: OfflineReason) -> Action {
        guard isActive else { return .none }
        state = .closing(reason)
        return .closeConnection(reason, flush: true)
    }

    /// A socket error: a reset is the pile going away. The channel is closed either way.
    mutating func errorCaught(isReset: Bool) -> Action {
        let reason: OfflineReason = isReset ? .closedByPile : .error
        if isActive { state = .closing(reason) }
        return .closeConnection(closeReason ?? reason, flush: false)
    }

    /// The sweeper found the session expired (`isExpired`).
    mutating func expired() -> Action {
        switch state {
        case .awaitingLogin, .decidingLogin: closeRequested(.loginTimeout)
        case .online: closeRequested(.livenessTimeout)
        case .idle, .closing, .closed: .none
        }
    }

    /// The channel went inactive.
    mutating func channelInactive() -> Ending {
        let reason = closeReason ?? .closedByPile
        let ending = Ending(
            reason: reason, countTrailingInput: isActive, releaseAdmission: admitted, wasPending: !loggedIn,
            abandonedCommands: commands?.pending.removeAll() ?? [])
        commands = nil
        state = .closed(reason)
        return ending
    }

    /// The session directory found that a newer connection owns the pile: this one ended replaced.
    mutating func replacedOnClose() {
        state = .closed(.replaced)
    }

    // MARK: input and backpressure

    /// A complete frame of `bytes` arrived: it keeps the session alive and is charged to the buckets.
    mutating func frameArrived(bytes: Int, now: NIODeadline) -> Action {
        lastActivity = now
        let action = charge(bytes: bytes, frames: 1, now: now)
        if case .closeConnection = action { return action }
        lastFrame = now
        framesInCount &+= 1
        return action
    }

    /// Charges input to the frame and byte buckets. Over either, a throttle episode starts (pause
    /// reading), or the connection closes after `maxThrottleEpisodes` within `throttleWindow`.
    /// During a pause the input is still served.
    mutating func charge(bytes: Int, frames: Int, now: NIODeadline) -> Action {
        if buckets.take(frames: frames, bytes: bytes, now: now) { return .none }
        if throttlePaused { return .none }
        if throttleWindowStart != Self.never, now - throttleWindowStart <= limits.throttleWindow {
            throttleCount = Self.increment(throttleCount)
        } else {
            throttleWindowStart = now
            throttleCount = 1
        }
        if throttleCount > limits.maxThrottleEpisodes { return closeRequested(.rateLimited) }
        throttlePaused = true
        return .pauseReading(max(limits.throttlePause, buckets.delayUntilPositive))
    }

    /// The throttle pause is over.
    mutating func throttlePauseEnded() -> Action {
        throttlePaused = false
        return resumeIfUnpaused()
    }

    /// The channel wants to read: held while paused.
    mutating func readRequested() -> Action {
        if readPaused {
            pendingRead = true
            return .none
        }
        return .read
    }

    /// The pile stopped or resumed reading what is sent to it. A pile that does not read gets no
    /// more of its requests read (so no more replies are produced) for a while.
    mutating func writabilityChanged(isWritable: Bool) -> Action {
        if isWritable {
            writePaused = false
            return .cancelSlowReaderTimer(read: resumeIfUnpaused() == .read)
        }
        writePaused = true
        return .startSlowReaderTimer
    }

    /// The pile did not read within `slowReaderTimeout`.
    mutating func slowReaderTimedOut() -> Action {
        closeRequested(.slowReader)
    }

    private mutating func resumeIfUnpaused() -> Action {
        guard !readPaused, pendingRead else { return .none }
        pendingRead = false
        return .read
    }

    /// Malformed input was seen (after `charge`).
    mutating func malformed() -> Action {
        malformedCount = Self.increment(malformedCount)
        return malformedCount > limits.maxMalformed ? closeRequested(.malformedInput) : .none
    }

    /// A frame was written to the pile.
    mutating func frameSent() {
        framesOutCount &+= 1
    }

    /// The pile's own limits (`PileLimitStore`) replace the configured rates at login, with full buckets.
    mutating func overrideRates(_ rates: PileRates, now: NIODeadline) {
        buckets = PileRateBuckets(rates: rates, now: now)
    }

    private static func increment(_ n: UInt32) -> UInt32 { n == .max ? n : n + 1 }

    // MARK: frames and login

    /// A well-formed, decoded frame arrived. For a logged-in pile it also tracks open transactions
    /// and the gun table; `laneRulesVersion` is read only when no transaction is open.
    mutating func frameReceived(_ message: YKCMessage, now: NIODeadline, laneRulesVersion: @autoclosure () -> Int) -> FrameAction {
        switch state {
        case .idle, .closing, .closed:
            return .ignore
        case .awaitingLogin(let deadline):
            if case .login(let login) = message {
                state = .decidingLogin(login.pileId, deadline: deadline)
                return .decideLogin(login)
            }
            return refuse(.beforeLogin)
        case .decidingLogin(let id, _):
            if case .login(let login) = message, login.pileId == id { return .ignore }
            return refuse(.beforeLogin)
        case .online(let id):
            if case .login(let login) = message {
                return login.pileId == id ? .reconfirmLogin(login) : refuse(.foreignPile)
            }
            if let other = message.pileId, other != id { return refuse(.foreignPile) }
            trackTransactions(message)
            switch message {
            case .heartbeat(let hb): guns.heartbeat(hb.gun, state: hb.gunState, at: now)
            case .realtimeData(let rt): guns.status(rt.gun, rt.status)
            default: break
            }
            var redecide = false
            if openTransactions.isEmpty {
                let version = laneRulesVersion()
                if version != laneVersion {
                    laneVersion = version
                    redecide = true
                }
            }
            return .process(redecideLane: redecide)
        }
    }

    private mutating func refuse(_ r: Refusal) -> FrameAction {
        refusedCount = Self.increment(refusedCount)
        if refusedCount > limits.maxRefused {
            _ = closeRequested(.refusedFrames)
            return .refuseAndClose(r)
        }
        return .refuse(r)
    }

    /// The login decision came back. A rejected login closes with `reason` once the rejection is
    /// written; a decision for a session already gone is dropped.
    mutating func loginDecided(accepted: Bool, reason: OfflineReason = .loginRejected) -> LoginAction {
        guard case .decidingLogin(let id, _) = state else { return .none }
        guard accepted else {
            state = .closing(reason)
            return .rejected(reason)
        }
        state = .online(id)
        loggedIn = true
        return .accepted(id)
    }

    /// The session's lane was decided under this version of the lane rules.
    mutating func laneDecided(rulesVersion: Int) {
        laneVersion = rulesVersion
    }

    /// Charging opens a transaction on a gun (a charging 0x13 or a start reply with a serial);
    /// its bill (0x3B) or an idle 0x13 closes it.
    private mutating func trackTransactions(_ message: YKCMessage) {
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
            openTransactions[t.gun] = nil
        default:
            break
        }
    }

    // MARK: commands

    /// The sequence for the next platform-originated frame (little-endian counter,
    /// docs/ykc/PROTOCOL-FACTS.md §1.2); nil once the connection is closing.
    mutating func platformFrameRequested() -> YKCSequence? {
        guard isActive else { return nil }
        return nextSequence()
    }

    private mutating func nextSequence() -> YKCSequence {
        platformSequence &+= 1
        return YKCSequence(counter: platformSequence)
    }

    /// A command that waits for the pile's reply (`PileReplyCodes.commandReply`), until `deadline`.
    mutating func commandRequested(code: UInt8, gun: Int?, deadline: NIODeadline, token: CommandToken) -> CommandAction {
        guard isOnline else { return .fail(token, .pileOffline) }
        guard let replyCode = PileReplyCodes.commandReply[code] else {
            return .fail(token, .invalidArguments("frame 0x\(String(code, radix: 16)) expects no reply"))
        }
        let queue = commands ?? PileCommandQueue(limit: limits.maxCommands)
        commands = queue
        guard !queue.pending.isFull else {
            return .fail(
                token,
                .tooManyCommands(
                    "pile \(pileId?.description ?? "?") already has \(queue.pending.limit) commands waiting for its reply (maxCommandsPerPile)"))
        }
        let sequence = nextSequence()
        _ = queue.pending.add(replyCode: replyCode, sequence: sequence, gun: gun, deadline: deadline, token: token)
        if let armed = queue.timerDeadline, armed <= deadline { return .send(sequence, armTimer: nil) }
        queue.timerDeadline = deadline
        return .send(sequence, armTimer: deadline)
    }

    /// A pile frame arrived: the waiting command it answers, if any, removed.
    mutating func commandReplyReceived(code: UInt8, sequence: YKCSequence, gun: Int?) -> CommandToken? {
        commands?.pending.match(code: code, sequence: sequence, gun: gun)
    }

    /// The command timer fired.
    mutating func commandTimerFired(now: NIODeadline) -> CommandTimeouts {
        guard let queue = commands else { return CommandTimeouts(expired: [], rearm: nil) }
        let expired = queue.pending.expire(now: now)
        queue.timerDeadline = queue.pending.earliestDeadline
        if queue.timerDeadline == nil { commands = nil }  // nothing waits: give the tables back
        return CommandTimeouts(expired: expired, rearm: queue.timerDeadline)
    }
}
