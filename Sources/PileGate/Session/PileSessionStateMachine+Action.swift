import NIOCore
import YKC

extension PileSessionStateMachine {
    /// What the handler does about the connection after an event: the I/O the machine cannot do.
    enum Action: Equatable {
        case none
        /// Pass a read on to the channel (it was not paused, or the pause that held it ended).
        case read
        /// The session was admitted: watch its login deadline and liveness (the loop's sweeper).
        case watchLiveness
        /// Close the channel; first flush what is queued (a rejection's 0x02) when `flush`.
        case closeConnection(OfflineReason, flush: Bool)
        /// A throttle episode began: stop reading for this long, then report `throttlePauseEnded`.
        case pauseReading(TimeAmount)
        /// The pile stopped reading what is sent to it: report `slowReaderTimedOut` after
        /// `slowReaderTimeout` unless it becomes writable first.
        case startSlowReaderTimer
        /// The pile reads again: cancel the slow-reader timer, and pass on a held read when `read`.
        case cancelSlowReaderTimer(read: Bool)
    }

    /// Why a frame was refused.
    enum Refusal: Equatable {
        case beforeLogin
        case foreignPile
    }

    /// What to do with a well-formed frame.
    enum FrameAction: Equatable {
        /// Decide this login (first login, or a different decision is needed).
        case decideLogin(Login)
        /// A repeated login of the same pile while online: answer accepted again.
        case reconfirmLogin(Login)
        /// A login repeated while the first is still being decided, or a frame after close: nothing to do.
        case ignore
        /// A logged-in pile's frame: serve it. `redecideLane` when the lane rules changed and no
        /// transaction is open, so the session's lane must be decided again.
        case process(redecideLane: Bool)
        case refuse(Refusal)
        case refuseAndClose(Refusal)
    }

    /// The outcome of a login decision.
    enum LoginAction: Equatable {
        /// Answer accepted, register the session.
        case accepted(PileID)
        /// Answer rejected, then close the connection with this reason (the machine is closing).
        case rejected(OfflineReason)
        /// The session is already gone (or not deciding): drop the decision.
        case none
    }

    /// What to do with a command to the pile.
    enum CommandAction {
        /// Write the command with this sequence; arm the command timer for `armTimer` if set
        /// (replacing one armed later).
        case send(YKCSequence, armTimer: NIODeadline?)
        /// Fail the caller at once: nothing is written.
        case fail(CommandToken, PileCommandError)
    }

    /// What the command timer found.
    struct CommandTimeouts {
        /// Commands whose deadline passed, oldest first: fail them with `PileCommandError.timeout`.
        var expired: [CommandToken]
        /// Arm the timer again for this deadline, when commands still wait.
        var rearm: NIODeadline?
    }

    /// What the handler does when the channel has gone inactive.
    struct Ending {
        /// Why the connection ended (before the session directory has had its say on a takeover).
        var reason: OfflineReason
        /// The pile closed it: whatever was left of a frame is counted as truncated input.
        var countTrailingInput: Bool
        /// Admission counted this connection: release it (`wasPending`: it never logged in).
        var releaseAdmission: Bool
        var wasPending: Bool
        /// Commands that were waiting for the pile's reply, oldest first: fail them (pile offline).
        var abandonedCommands: [CommandToken]
    }
}
