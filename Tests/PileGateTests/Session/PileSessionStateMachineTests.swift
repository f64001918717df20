import NIOCore
@testable import PileGate
import Testing
import YKC

/// The session rules without sockets (docs/ykc/PROTOCOL-FACTS.md §5.1).
@Suite("Session state machine")
struct PileSessionStateMachineTests {
    let pile = PileID("32010600019236")!
    let limits = PileSessionStateMachine.Limits(maxMalformed: 2, maxRefused: 2, maxThrottleEpisodes: 2, throttleWindow: .seconds(10))

    func login(_ id: PileID) -> YKCMessage {
        .login(Login(pileId: id, pileType: .ac, gunCount: 1, protocolVersion: 16, firmwareVersion: "x", networkType: .lan, sim: "0", carrier: .other))
    }
    func heartbeat(_ id: PileID) -> YKCMessage { .heartbeat(Heartbeat(pileId: id, gun: 1, gunState: .normal)) }

    @Test("the first frame must be a login; anything else is refused, and too many close")
    func loginFirst() {
        var m = PileSessionStateMachine(limits: limits)
        #expect(m.frameReceived(heartbeat(pile)) == .refuse(.beforeLogin))
        #expect(m.frameReceived(heartbeat(pile)) == .refuse(.beforeLogin))
        #expect(m.frameReceived(heartbeat(pile)) == .refuseAndClose(.beforeLogin))
    }

    @Test("a login is decided once; repeats while deciding are ignored; online frames are processed")
    func loginFlow() {
        var m = PileSessionStateMachine(limits: limits)
        guard case .decideLogin = m.frameReceived(login(pile)) else { Issue.record("expected decideLogin"); return }
        #expect(m.frameReceived(login(pile)) == .ignore)
        #expect(m.frameReceived(heartbeat(pile)) == .refuse(.beforeLogin))
        let decided = m.loginDecided(accepted: true)
        #expect(decided)
        #expect(m.isOnline)
        #expect(m.frameReceived(heartbeat(pile)) == .process)
        guard case .reconfirmLogin = m.frameReceived(login(pile)) else { Issue.record("expected reconfirm"); return }
    }

    @Test("after login, a frame or login carrying another pile's id is refused")
    func foreignPile() {
        var m = PileSessionStateMachine(limits: limits)
        _ = m.frameReceived(login(pile))
        _ = m.loginDecided(accepted: true)
        let other = PileID("11111111111111")!
        #expect(m.frameReceived(heartbeat(other)) == .refuse(.foreignPile))
        #expect(m.frameReceived(login(other)) == .refuse(.foreignPile))
        #expect(m.frameReceived(heartbeat(other)) == .refuseAndClose(.foreignPile))
    }

    @Test("a rejected login leaves the session closed")
    func rejected() {
        var m = PileSessionStateMachine(limits: limits)
        _ = m.frameReceived(login(pile))
        let decided = m.loginDecided(accepted: false)
        #expect(decided)
        #expect(!m.isOnline)
        #expect(m.frameReceived(heartbeat(pile)) == .ignore)
        let again = m.loginDecided(accepted: true)
        #expect(!again)
    }

    @Test("malformed input and throttle episodes close past their limits; episodes age out of the window")
    func limitsEnforced() {
        var m = PileSessionStateMachine(limits: limits)
        let first = m.malformed()
        let second = m.malformed()
        let third = m.malformed()
        #expect(!first && !second && third)
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect(m.throttled(now: t0) == .pause)
        #expect(m.throttled(now: t0 + .seconds(1)) == .pause)
        #expect(m.throttled(now: t0 + .seconds(2)) == .close)
        var n = PileSessionStateMachine(limits: limits)
        #expect(n.throttled(now: t0) == .pause)
        #expect(n.throttled(now: t0 + .seconds(1)) == .pause)
        #expect(n.throttled(now: t0 + .seconds(20)) == .pause)
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
