import NIOCore
import YKC

/// A handle on a live session that other loops (admin API, backend hub, a newer login) use to
/// reach it. All work is hopped onto the session's own event loop.
public final class PileSessionHandle: Sendable {
    public let info: PileSessionInfo
    public let channel: any Channel

    init(info: PileSessionInfo, channel: any Channel) {
        self.info = info
        self.channel = channel
    }

    /// Asks the session to close with `reason` (it emits `pile_offline` with that reason).
    public func close(reason: OfflineReason) {
        channel.pipeline.fireUserInboundEventTriggered(SessionCommand.close(reason))
    }

    /// Sends a platform-originated message with the session's next sequence number; the future
    /// completes with the sequence bytes used, once written.
    public func send(_ message: YKCMessage) -> EventLoopFuture<YKCSequence> {
        let promise = channel.eventLoop.makePromise(of: YKCSequence.self)
        channel.pipeline.fireUserInboundEventTriggered(SessionCommand.send(message, promise))
        return promise.futureResult
    }

    /// Sends a command and waits for the pile's reply frame (matched by reply code and sequence
    /// bytes), failing with `PileCommandError.timeout` or `.pileOffline`.
    public func request(_ message: YKCMessage, timeout: TimeAmount) -> EventLoopFuture<YKCMessage> {
        let promise = channel.eventLoop.makePromise(of: YKCMessage.self)
        channel.pipeline.fireUserInboundEventTriggered(SessionCommand.request(message, timeout, promise))
        return promise.futureResult
    }

    /// Sends a reply with given sequence bytes (answers to pile requests decided elsewhere).
    public func reply(_ message: YKCMessage, sequence: YKCSequence) {
        channel.pipeline.fireUserInboundEventTriggered(SessionCommand.reply(message, sequence))
    }

    /// Live per-gun state and counters, read on the session's loop.
    public func liveState() -> EventLoopFuture<PileLiveState> {
        let promise = channel.eventLoop.makePromise(of: PileLiveState.self)
        channel.pipeline.fireUserInboundEventTriggered(SessionCommand.inspect(promise))
        return promise.futureResult
    }
}
