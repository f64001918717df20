import NIOCore

/// What a session needs only now and then, kept together and allocated at first use so that an
/// idle session pays one pointer for all of it: the timers it arms rarely (a slow reader's grace,
/// the earliest command deadline) and its frame encryption (from the pile's first encrypted
/// frame on).
final class PileSessionSideState {
    var slowReader: Scheduled<Void>?
    var command: Scheduled<Void>?
    var encryption: PileEncryptionState?
}
