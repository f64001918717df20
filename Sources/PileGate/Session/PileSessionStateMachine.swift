import NIOCore
import YKC

/// The protocol rules of one pile connection, apart from any I/O (docs/ykc/PROTOCOL-FACTS.md §5.1): the first frame
/// must be a login; nothing else is accepted until the login is decided; frames carrying another
/// pile's id are refused; malformed input, refused frames and throttle episodes are counted and
/// end the connection past their limits. The handler executes the returned actions.
struct PileSessionStateMachine {
    enum State: Equatable {
        case awaitingLogin
        case decidingLogin(PileID)
        case online(PileID)
        case closed
    }

    struct Limits {
        var maxMalformed: Int
        var maxRefused: Int
        var maxThrottleEpisodes: Int
        var throttleWindow: TimeAmount
    }

    enum Refusal: Equatable {
        case beforeLogin
        case foreignPile
    }

    enum FrameAction: Equatable {
        /// Decide this login (first login, or a different decision is needed).
        case decideLogin(Login)
        /// A repeated login of the same pile while online: answer accepted again.
        case reconfirmLogin(Login)
        /// A login repeated while the first is still being decided: nothing to do.
        case ignore
        case process
        case refuse(Refusal)
        case refuseAndClose(Refusal)
    }

    enum ThrottleAction: Equatable {
        case pause
        case close
    }

    private(set) var state: State = .awaitingLogin
    private(set) var malformedCount = 0
    private(set) var refusedCount = 0
    private var throttleWindowStart: NIODeadline?
    private var throttleCount = 0
    let limits: Limits

    init(limits: Limits) {
        self.limits = limits
    }

    var pileId: PileID? {
        switch state {
        case .decidingLogin(let p), .online(let p): p
        default: nil
        }
    }

    var isOnline: Bool {
        if case .online = state { return true }
        return false
    }

    /// A well-formed frame arrived.
    mutating func frameReceived(_ message: YKCMessage) -> FrameAction {
        switch state {
        case .closed:
            return .ignore
        case .awaitingLogin:
            if case .login(let login) = message {
                state = .decidingLogin(login.pileId)
                return .decideLogin(login)
            }
            return refuse(.beforeLogin)
        case .decidingLogin(let id):
            if case .login(let login) = message, login.pileId == id { return .ignore }
            return refuse(.beforeLogin)
        case .online(let id):
            if case .login(let login) = message {
                return login.pileId == id ? .reconfirmLogin(login) : refuse(.foreignPile)
            }
            if let other = message.pileId, other != id { return refuse(.foreignPile) }
            return .process
        }
    }

    private mutating func refuse(_ r: Refusal) -> FrameAction {
        refusedCount += 1
        return refusedCount > limits.maxRefused ? .refuseAndClose(r) : .refuse(r)
    }

    /// The login decision came back. Returns false if the session is already gone.
    mutating func loginDecided(accepted: Bool) -> Bool {
        guard case .decidingLogin(let id) = state else { return false }
        state = accepted ? .online(id) : .closed
        return true
    }

    /// Malformed input was seen; true when the connection must close.
    mutating func malformed() -> Bool {
        malformedCount += 1
        return malformedCount > limits.maxMalformed
    }

    /// The pile exceeded its rate.
    mutating func throttled(now: NIODeadline) -> ThrottleAction {
        if let start = throttleWindowStart, now - start <= limits.throttleWindow {
            throttleCount += 1
        } else {
            throttleWindowStart = now
            throttleCount = 1
        }
        return throttleCount > limits.maxThrottleEpisodes ? .close : .pause
    }

    /// The connection is closing; true the first time.
    mutating func close() -> Bool {
        if state == .closed { return false }
        state = .closed
        return true
    }
}
