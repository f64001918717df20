import NIOCore

/// The commands waiting for one pile's reply and the deadline the session's command timer is
/// armed for. A class, held by the session machine only while commands wait or a timer is armed:
/// an idle session pays one pointer for it.
final class PileCommandQueue<Token> {
    var pending: PendingCommands<Token>
    /// The deadline the handler's one command timer is armed for; nil when none is armed.
    var timerDeadline: NIODeadline?

    init(limit: Int) {
        pending = PendingCommands(limit: limit)
    }
}
