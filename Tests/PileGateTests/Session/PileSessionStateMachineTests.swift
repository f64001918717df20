import NIOCore
@testable import PileGate
import Testing
import YKC

/// The session rules without sockets, event by event (docs/ykc/PROTOCOL-FACTS.md §5.1): what the
/// machine decides and what it tells the handler to do. Command tokens are plain numbers here.
@Suite("Session state machine")
struct PileSessionStateMachineTests {
    typealias Machine = PileSessionStateMachine<Int>
    let pile = PileID("32010600019236")!
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    /// Limits whose buckets hold `frames` frames (refilling one a second) and plenty of bytes.
    func limits(frames: Double = 1000) -> PileSessionLimits {
        PileSessionLimits(
            maxMalformed: 2, maxRefused: 2, maxThrottleEpisodes: 2, throttleWindow: .seconds(10), throttlePause: .seconds(1),
            loginTimeout: .seconds(10), livenessTimeout: .seconds(35), maxCommands: 2,
            rates: PileRates(frameRate: 1, frameBurst: frames, byteRate: 1_000_000, byteBurst: 1_000_000))
    }

    func machine(frames: Double = 1000) -> Machine {
        Machine(limits: limits(frames: frames), now: t0)
    }

    /// Admitted at `t0`.
    func active(frames: Double = 1000) -> Machine {
        var m = machine(frames: frames)
        #expect(m.channelActive(refusal: nil, now: t0) == .watchLiveness)
        return m
    }

    /// Logged in as `pile` at `t0`.
    func online(frames: Double = 1000) -> Machine {
        var m = active(frames: frames)
        _ = m.frameReceived(login(pile), now: t0, laneRulesVersion: 0)
        #expect(m.loginDecided(accepted: true) == .accepted(pile))
        m.laneDecided(rulesVersion: 1)
        return m
    }

    func login(_ id: PileID) -> YKCMessage {
        .login(Login(pileId: id, pileType: .ac, gunCount: 1, protocolVersion: 16, firmwareVersion: "x", networkType: .lan, sim: "0", carrier: .other))
    }
    func heartbeat(_ id: PileID, gun: GunNumber = 1) -> YKCMessage { .heartbeat(Heartbeat(pileId: id, gun: gun, gunState: .normal)) }
    func realtime(_ status: GunStatus, serial: TradeSerial, gun: GunNumber = 1) -> YKCMessage {
        let zero = YKCDecimal(units: 0, scale: 1)
        return .realtimeData(
            RealtimeData(
                tradeSerial: serial, pileId: pile, gun: gun, status: status, gunHolstered: .no, gunPlugged: .yes, outputVoltage: zero,
                outputCurrent: zero, gunTemperature: zero, gunCableCode: .zero, soc: 50, maxBatteryTemperature: zero,
                chargingMinutes: 1, remainingMinutes: 1, energy: zero, lossAdjustedEnergy: zero, amount: zero,
                hardwareFaults: .init(raw: 0)))
    }
    let serial = TradeSerial(high: 1, low: 2)

    // MARK: login

    @Test("the first frame must be a login; anything else is refused, and too many close")
    func loginFirst() {
        var m = active()
        #expect(m.frameReceived(heartbeat(pile), now: t0, laneRulesVersion: 0) == .refuse(.beforeLogin))
        #expect(m.frameReceived(heartbeat(pile), now: t0, laneRulesVersion: 0) == .refuse(.beforeLogin))
        #expect(m.frameReceived(heartbeat(pile), now: t0, laneRulesVersion: 0) == .refuseAndClose(.beforeLogin))
        #expect(m.state == .closing(.refusedFrames))
        #expect(m.frameReceived(login(pile), now: t0, laneRulesVersion: 0) == .ignore)
    }

    @Test("a login is decided once; repeats while deciding are ignored; online frames are processed")
    func loginFlow() {
        var m = active()
        #expect(m.frameReceived(login(pile), now: t0, laneRulesVersion: 0) == .decideLogin(Self.loginBody(login(pile))))
        #expect(m.state == .decidingLogin(pile, deadline: t0 + .seconds(10)))
        #expect(m.frameReceived(login(pile), now: t0, laneRulesVersion: 0) == .ignore)
        #expect(m.frameReceived(heartbeat(pile), now: t0, laneRulesVersion: 0) == .refuse(.beforeLogin))
        #expect(m.loginDecided(accepted: true) == .accepted(pile))
        #expect(m.isOnline && m.loggedIn)
        m.laneDecided(rulesVersion: 0)
        #expect(m.frameReceived(heartbeat(pile), now: t0, laneRulesVersion: 0) == .process(redecideLane: false))
        #expect(m.frameReceived(login(pile), now: t0, laneRulesVersion: 0) == .reconfirmLogin(Self.loginBody(login(pile))))
        #expect(m.loginDecided(accepted: true) == .none)
    }

    static func loginBody(_ m: YKCMessage) -> Login {
        guard case .login(let l) = m else { fatalError("not a login") }
        return l
    }

    @Test("after login, a frame or login carrying another pile's id is refused")
    func foreignPile() {
        var m = online()
        let other = PileID("11111111111111")!
        #expect(m.frameReceived(heartbeat(other), now: t0, laneRulesVersion: 1) == .refuse(.foreignPile))
        #expect(m.frameReceived(login(other), now: t0, laneRulesVersion: 1) == .refuse(.foreignPile))
        #expect(m.frameReceived(heartbeat(other), now: t0, laneRulesVersion: 1) == .refuseAndClose(.foreignPile))
        #expect(m.closeReason == .refusedFrames)
    }

    @Test("a rejected login closes with its reason once the rejection is written; a late decision is dropped")
    func rejected() {
        var m = active()
        _ = m.frameReceived(login(pile), now: t0, laneRulesVersion: 0)
        #expect(m.loginDecided(accepted: false) == .rejected(.loginRejected))
        #expect(!m.isOnline && !m.isActive && m.pileId == nil)
        #expect(m.state == .closing(.loginRejected))
        #expect(m.frameReceived(heartbeat(pile), now: t0, laneRulesVersion: 0) == .ignore)
        #expect(m.loginDecided(accepted: true) == .none)
        let ending = m.channelInactive()
        #expect(ending.reason == .loginRejected && !ending.countTrailingInput && ending.releaseAdmission && ending.wasPending)

        var banned = active()
        _ = banned.frameReceived(login(pile), now: t0, laneRulesVersion: 0)
        #expect(banned.loginDecided(accepted: false, reason: .admissionRefused) == .rejected(.admissionRefused))
    }

    @Test("the login deadline runs from admission, through the decision; then liveness counts from the last frame")
    func loginDeadlineAndLiveness() {
        var m = active()
        #expect(m.state == .awaitingLogin(deadline: t0 + .seconds(10)))
        #expect(!m.isExpired(now: t0 + .seconds(9)))
        #expect(m.isExpired(now: t0 + .seconds(10)))
        _ = m.frameReceived(login(pile), now: t0 + .seconds(9), laneRulesVersion: 0)
        #expect(m.isExpired(now: t0 + .seconds(10)))  // deciding does not extend the deadline
        var expiring = m
        #expect(expiring.expired() == .closeConnection(.loginTimeout, flush: true))
        #expect(!expiring.isExpired(now: t0 + .seconds(99)))  // closing: never again

        _ = m.loginDecided(accepted: true)
        #expect(!m.isExpired(now: t0 + .seconds(34)))
        #expect(m.isExpired(now: t0 + .seconds(35)))
        #expect(m.frameArrived(bytes: 17, now: t0 + .seconds(30)) == .none)
        #expect(!m.isExpired(now: t0 + .seconds(64)))
        #expect(m.isExpired(now: t0 + .seconds(65)))
        #expect(m.expired() == .closeConnection(.livenessTimeout, flush: true))
        #expect(m.expired() == .none)
    }

    @Test("a connection refused at shutdown or admission closes at once and is never watched")
    func refusedAtActive() {
        var shutdown = machine()
        #expect(shutdown.channelActive(refusal: .shutdown, now: t0) == .closeConnection(.shutdown, flush: true))
        #expect(!shutdown.isExpired(now: t0 + .seconds(100)))
        let ending = shutdown.channelInactive()
        #expect(ending.reason == .shutdown && !ending.releaseAdmission)
        var refused = machine()
        #expect(refused.channelActive(refusal: .admissionRefused, now: t0) == .closeConnection(.admissionRefused, flush: false))
        #expect(refused.readRequested() == .read)
    }

    // MARK: close reasons

    @Test("the first close reason wins; errors and the pile closing keep it; inactive reports it")
    func closeReasons() {
        var m = online()
        #expect(m.closeRequested(.kicked) == .closeConnection(.kicked, flush: true))
        #expect(m.closeRequested(.shutdown) == .none)
        #expect(m.errorCaught(isReset: false) == .closeConnection(.kicked, flush: false))
        let ending = m.channelInactive()
        #expect(ending.reason == .kicked && !ending.countTrailingInput && !ending.wasPending)
        #expect(m.state == .closed(.kicked))

        var reset = online()
        #expect(reset.errorCaught(isReset: true) == .closeConnection(.closedByPile, flush: false))
        var failed = online()
        #expect(failed.errorCaught(isReset: false) == .closeConnection(.error, flush: false))
        var gone = online()
        let byPile = gone.channelInactive()
        #expect(byPile.reason == .closedByPile && byPile.countTrailingInput)
        gone.replacedOnClose()
        #expect(gone.closeReason == .replaced)
    }

    @Test("malformed input closes past its limit")
    func malformedInput() {
        var m = active()
        #expect(m.malformed() == .none)
        #expect(m.malformed() == .none)
        #expect(m.malformed() == .closeConnection(.malformedInput, flush: true))
        #expect(m.malformed() == .none)  // already closing
    }

    // MARK: throttle and slow reader

    @Test("over its rate a pile is paused (reads held, input still served), and closed after too many episodes")
    func throttle() {
        var m = online(frames: 2)
        #expect(m.frameArrived(bytes: 10, now: t0) == .none)
        #expect(m.frameArrived(bytes: 10, now: t0) == .none)
        // The third overdraws the bucket (rate 1/s): pause for the throttle pause or the bucket's delay.
        #expect(m.frameArrived(bytes: 10, now: t0) == .pauseReading(.seconds(1)))
        #expect(m.readPaused && m.framesIn == 3)
        #expect(m.frameArrived(bytes: 10, now: t0) == .none)  // same episode: served, not counted
        #expect(m.readRequested() == .none)
        #expect(m.throttlePauseEnded() == .read)  // the held read
        #expect(m.readRequested() == .read)
        // The bucket is 2 frames in debt: the next episode pauses until it is positive again.
        #expect(m.frameArrived(bytes: 10, now: t0 + .seconds(1)) == .pauseReading(.seconds(2)))
        #expect(m.throttlePauseEnded() == .none)  // nothing held
        #expect(m.frameArrived(bytes: 10, now: t0 + .seconds(2)) == .closeConnection(.rateLimited, flush: true))
        #expect(m.closeReason == .rateLimited)
        #expect(m.framesIn == 5)  // the frame that closed it is not served
    }

    @Test("throttle episodes age out of their window")
    func throttleWindow() {
        var m = online(frames: 0)
        #expect(m.charge(bytes: 1, frames: 1, now: t0) == .pauseReading(.seconds(1)))
        _ = m.throttlePauseEnded()
        #expect(m.charge(bytes: 1, frames: 1, now: t0 + .seconds(1)) != .none)
        _ = m.throttlePauseEnded()
        #expect(m.charge(bytes: 1, frames: 1, now: t0 + .seconds(20)) != .closeConnection(.rateLimited, flush: true))
        #expect(m.isActive)
    }

    @Test("a pile that stops reading holds our reads until it reads again, and is closed if it never does")
    func slowReader() {
        var m = online()
        #expect(m.writabilityChanged(isWritable: false) == .startSlowReaderTimer)
        #expect(m.readRequested() == .none)
        #expect(m.writabilityChanged(isWritable: true) == .cancelSlowReaderTimer(read: true))
        #expect(m.writabilityChanged(isWritable: false) == .startSlowReaderTimer)
        #expect(m.writabilityChanged(isWritable: true) == .cancelSlowReaderTimer(read: false))

        // Both pauses at once: the read waits for the last one to end.
        var both = online(frames: 0)
        #expect(both.charge(bytes: 1, frames: 1, now: t0) == .pauseReading(.seconds(1)))
        #expect(both.writabilityChanged(isWritable: false) == .startSlowReaderTimer)
        #expect(both.readRequested() == .none)
        #expect(both.writabilityChanged(isWritable: true) == .cancelSlowReaderTimer(read: false))
        #expect(both.throttlePauseEnded() == .read)

        var stuck = online()
        _ = stuck.writabilityChanged(isWritable: false)
        #expect(stuck.slowReaderTimedOut() == .closeConnection(.slowReader, flush: true))
        #expect(stuck.slowReaderTimedOut() == .none)
    }

    // MARK: transactions and lanes

    @Test("transactions open on charging data or a started remote start, close on the bill or idle data")
    func transactions() {
        var m = online()
        _ = m.frameReceived(realtime(.charging, serial: serial), now: t0, laneRulesVersion: 1)
        #expect(m.openTransactions == [1: serial])
        _ = m.frameReceived(realtime(.charging, serial: .zero, gun: 2), now: t0, laneRulesVersion: 1)
        #expect(m.openTransactions.count == 1)  // no serial, no transaction
        _ = m.frameReceived(realtime(.idle, serial: .zero), now: t0, laneRulesVersion: 1)
        #expect(m.openTransactions.isEmpty)
        let start = YKCMessage.remoteStartReply(RemoteStartReply(tradeSerial: serial, pileId: pile, gun: 2, result: .started, failureReason: .noReason))
        _ = m.frameReceived(start, now: t0, laneRulesVersion: 1)
        #expect(m.openTransactions == [2: serial])
        let failed = YKCMessage.remoteStartReply(RemoteStartReply(tradeSerial: serial, pileId: pile, gun: 3, result: .failed, failureReason: .noReason))
        _ = m.frameReceived(failed, now: t0, laneRulesVersion: 1)
        #expect(m.openTransactions == [2: serial])
        _ = m.frameReceived(realtime(.offline, serial: .zero, gun: 2), now: t0, laneRulesVersion: 1)
        #expect(m.openTransactions.isEmpty)
    }

    @Test("the lane is decided again after a rule change, only while no transaction is open, once per version")
    func laneRedecision() {
        var m = online()
        var reads = 0
        func version(_ v: Int) -> Int {
            reads += 1
            return v
        }
        #expect(m.frameReceived(heartbeat(pile), now: t0, laneRulesVersion: version(1)) == .process(redecideLane: false))
        _ = m.frameReceived(realtime(.charging, serial: serial), now: t0, laneRulesVersion: version(1))
        reads = 0
        // Rules changed while charging: the lane is pinned, and the version is not even read.
        #expect(m.frameReceived(heartbeat(pile), now: t0, laneRulesVersion: version(2)) == .process(redecideLane: false))
        #expect(reads == 0)
        // The idle data frame closes the transaction: that very frame re-decides.
        #expect(m.frameReceived(realtime(.idle, serial: .zero), now: t0, laneRulesVersion: version(2)) == .process(redecideLane: true))
        #expect(m.frameReceived(heartbeat(pile), now: t0, laneRulesVersion: version(2)) == .process(redecideLane: false))
    }

    @Test("the gun table keeps the last heartbeat and status per gun, bounded")
    func guns() {
        var m = online()
        #expect(m.guns.guns.isEmpty)
        _ = m.frameReceived(heartbeat(pile, gun: 1), now: t0 + .seconds(1), laneRulesVersion: 1)
        _ = m.frameReceived(realtime(.idle, serial: .zero, gun: 2), now: t0, laneRulesVersion: 1)
        _ = m.frameReceived(heartbeat(pile, gun: 1), now: t0 + .seconds(2), laneRulesVersion: 1)
        #expect(m.guns.guns == [
            .init(gun: 1, state: .normal, status: nil, lastHeartbeat: t0 + .seconds(2)),
            .init(gun: 2, state: .normal, status: .idle, lastHeartbeat: nil),
        ])
        var table = PileGunTable()
        for n in 0..<100 { table.status(GunNumber(raw: UInt8(n)), .idle) }
        #expect(table.guns.count == PileGunTable.limit)
        // Kept to a tenth of a second; an unnamed state or status is kept as its raw byte.
        var one = PileGunTable()
        one.heartbeat(7, state: .unrecognized(9), at: .uptimeNanoseconds(1_234_567_890_123))
        one.status(7, .unrecognized(200))
        #expect(one.guns.first?.lastHeartbeat == .uptimeNanoseconds(1_234_500_000_000))
        #expect(one.guns.first?.state == .unrecognized(9))
        #expect(one.guns.first?.status == .unrecognized(200))
        one.status(8, .offline)
        #expect(one.guns.last?.status == .offline)
        #expect(one.guns.last?.lastHeartbeat == nil)
    }

    // MARK: commands

    func expectSend(_ a: Machine.CommandAction, _ seq: UInt16, arm: NIODeadline?) {
        guard case .send(let s, let armed) = a else {
            Issue.record("expected send, got \(a)")
            return
        }
        #expect(s == YKCSequence(counter: seq))
        #expect(armed == arm)
    }

    func expectFail(_ a: Machine.CommandAction, _ token: Int, _ code: String) {
        guard case .fail(let t, let e) = a else {
            Issue.record("expected fail, got \(a)")
            return
        }
        #expect(t == token && e.code == code)
    }

    @Test("commands: only online, only those with a reply, bounded; one timer for the earliest deadline")
    func commands() {
        var idle = active()
        expectFail(idle.commandRequested(code: 0x92, gun: nil, deadline: t0, token: 1), 1, "pile_offline")

        var m = online()
        #expect(m.platformFrameRequested() == YKCSequence(counter: 1))  // e.g. the time sync after login
        expectFail(m.commandRequested(code: 0x02, gun: nil, deadline: t0, token: 2), 2, "invalid_args")
        expectSend(m.commandRequested(code: 0x92, gun: nil, deadline: t0 + .seconds(5), token: 3), 2, arm: t0 + .seconds(5))
        // A later deadline rides on the armed timer; the table is full at maxCommands (2).
        expectSend(m.commandRequested(code: 0x36, gun: 1, deadline: t0 + .seconds(9), token: 4), 3, arm: nil)
        expectFail(m.commandRequested(code: 0x92, gun: nil, deadline: t0, token: 5), 5, "too_many_commands")
        #expect(m.waitingCommands == 2)

        // Replies: by code and sequence, or by code and gun.
        #expect(m.commandReplyReceived(code: 0x91, sequence: YKCSequence(counter: 9), gun: nil) == 3)
        #expect(m.commandReplyReceived(code: 0x91, sequence: YKCSequence(counter: 2), gun: nil) == nil)
        // The timer fires for a deadline whose command was answered: nothing expires, re-arm for the next.
        let first = m.commandTimerFired(now: t0 + .seconds(5))
        #expect(first.expired.isEmpty && first.rearm == t0 + .seconds(9))
        // An earlier deadline than the armed one re-arms the timer earlier.
        expectSend(m.commandRequested(code: 0x92, gun: nil, deadline: t0 + .seconds(7), token: 6), 4, arm: t0 + .seconds(7))
        let second = m.commandTimerFired(now: t0 + .seconds(7))
        #expect(second.expired == [6] && second.rearm == t0 + .seconds(9))
        let third = m.commandTimerFired(now: t0 + .seconds(9))
        #expect(third.expired == [4] && third.rearm == nil)
        expectSend(m.commandRequested(code: 0x12, gun: 1, deadline: t0 + .seconds(20), token: 7), 5, arm: t0 + .seconds(20))
        #expect(m.commandReplyReceived(code: 0x13, sequence: YKCSequence(counter: 99), gun: 1) == 7)
    }

    @Test("commands still waiting when the pile goes are handed back; nothing is written after close")
    func commandsAbandoned() {
        var m = online()
        _ = m.commandRequested(code: 0x92, gun: nil, deadline: t0 + .seconds(5), token: 1)
        _ = m.commandRequested(code: 0x52, gun: nil, deadline: t0 + .seconds(5), token: 2)
        _ = m.closeRequested(.kicked)
        #expect(m.platformFrameRequested() == nil)
        expectFail(m.commandRequested(code: 0x92, gun: nil, deadline: t0, token: 3), 3, "pile_offline")
        #expect(m.channelInactive().abandonedCommands == [1, 2])
        #expect(m.waitingCommands == 0)
    }

    @Test("the reply tables come from the protocol catalogue and match the protocol's pairs")
    func replyCodes() {
        #expect(PileReplyCodes.commandReply == [
            0x12: 0x13, 0x34: 0x33, 0x36: 0x35, 0x42: 0x41, 0x44: 0x43, 0x46: 0x45, 0x48: 0x47, 0x52: 0x51,
            0x56: 0x55, 0x58: 0x57, 0x62: 0x63, 0x92: 0x91, 0x94: 0x93, 0xA4: 0xA3, 0xF0: 0xF1,
        ])
        #expect(PileReplyCodes.pileRequests == [0x05, 0x09, 0x31, 0x3B, 0xA1])
        for (command, reply) in PileReplyCodes.commandReply {
            #expect(YKCMessageInfo.of(code: reply)?.replyTo == command)
        }
    }

    @Test("a pile's own rates replace the shared ones at login, with full buckets; bytes count as well as frames")
    func rateOverride() {
        var m = online(frames: 1)
        #expect(m.frameArrived(bytes: 10, now: t0) == .none)
        m.overrideRates(PileRates(frameRate: 1, frameBurst: 1, byteRate: 10, byteBurst: 20), now: t0)
        #expect(m.rates.byteBurst == 20)
        #expect(m.frameArrived(bytes: 20, now: t0) == .none)
        // A second later 10 bytes are back: 15 leave 5 in debt, half a second at 10 a second, under the 1 s floor.
        #expect(m.charge(bytes: 15, frames: 0, now: t0 + .seconds(1)) == .pauseReading(.seconds(1)))
        #expect(m.charge(bytes: 100, frames: 0, now: t0 + .seconds(1)) == .none)  // same episode
    }

    @Test("the packed buckets follow TokenBucket's arithmetic, charge for charge")
    func packedBuckets() {
        let rates = PileRates(frameRate: 3, frameBurst: 5, byteRate: 100, byteBurst: 300)
        var packed = PileRateBuckets(rates: rates, now: t0)
        var frames = TokenBucket(rate: 3, burst: 5, now: t0)
        var bytes = TokenBucket(rate: 100, burst: 300, now: t0)
        let steps: [(ms: Int64, frames: Int, bytes: Int)] = [(0, 1, 50), (0, 1, 200), (100, 0, 90), (200, 4, 10), (900, 1, 300), (5000, 2, 20)]
        for step in steps {
            let now = t0 + .milliseconds(step.ms)
            let framesOK = step.frames == 0 || frames.take(Double(step.frames), now: now)
            let bytesOK = bytes.take(Double(step.bytes), now: now)
            #expect(packed.take(frames: step.frames, bytes: step.bytes, now: now) == (framesOK && bytesOK))
            #expect(abs(packed.byteTokens - bytes.tokens) < 1e-9)
            if step.frames > 0 { #expect(abs(packed.frameTokens - frames.tokens) < 1e-9) }
            let delay = max(frames.delay(), bytes.delay())
            #expect(abs(packed.delayUntilPositive.nanoseconds - delay.nanoseconds) <= 2)
        }
    }

    @Test("token bucket: burst, refill at rate, debt delays")
    func tokenBucket() {
        let t0 = NIODeadline.uptimeNanoseconds(5_000_000_000)
        var b = TokenBucket(rate: 10, burst: 5, now: t0)
        for _ in 0..<5 {
            let ok = b.take(1, now: t0)
            #expect(ok)
        }
        let sixth = b.take(1, now: t0)
        #expect(!sixth)
        #expect(b.delay() == .milliseconds(100))
        let later = b.take(1, now: t0 + .milliseconds(300))
        #expect(later)
        let refilled = b.tryTake(1, now: t0 + .seconds(10))
        #expect(refilled)
        #expect(b.tokens <= 5)
    }

    @Test("flap detector: more than N connects in the window bans; the ban expires")
    func flapDetector() {
        let f = FlapDetector(maxConnects: 2, window: .seconds(10), banDuration: .seconds(30))
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
        #expect(f.record("a", now: t0) == .allowed)
        #expect(f.record("a", now: t0 + .seconds(1)) == .allowed)
        #expect(f.record("a", now: t0 + .seconds(2)) == .newlyBanned)
        #expect(f.record("a", now: t0 + .seconds(3)) == .banned(remaining: .seconds(29)))
        #expect(f.record("b", now: t0 + .seconds(3)) == .allowed)
        #expect(f.record("a", now: t0 + .seconds(40)) == .allowed)
    }
}
