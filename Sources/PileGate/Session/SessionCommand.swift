import NIOCore
import YKC

/// Requests delivered to a session handler from other loops as user events.
enum SessionCommand: Sendable {
    case close(OfflineReason)
    case send(YKCMessage, EventLoopPromise<YKCSequence>)
    case request(YKCMessage, TimeAmount, EventLoopPromise<YKCMessage>)
    case reply(YKCMessage, YKCSequence)
    case inspect(EventLoopPromise<PileLiveState>)
}
