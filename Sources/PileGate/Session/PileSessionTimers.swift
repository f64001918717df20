import NIOCore

/// The timers a session arms only now and then (a slow reader's grace, the earliest command
/// deadline), kept together and allocated at first use: an idle session pays one pointer for them.
final class PileSessionTimers {
    var slowReader: Scheduled<Void>?
    var command: Scheduled<Void>?
}
