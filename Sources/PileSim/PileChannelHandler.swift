import NIOCore
import YKC

/// Feeds one connection's events into its pile's core. Created per connection; the
/// `connectionID` lets the core ignore a late event from a connection it already gave up.
final class PileChannelHandler: ChannelInboundHandler {
    typealias InboundIn = YKCParseEvent
    typealias OutboundOut = ByteBuffer

    let core: PileCore
    let connectionID: Int

    init(core: PileCore, connectionID: Int) {
        self.core = core
        self.connectionID = connectionID
    }

    func channelActive(context: ChannelHandlerContext) {
        core.connectionActive(context, connectionID: connectionID)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        core.connectionInactive(connectionID: connectionID)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .frame(let frame): core.received(frame, connectionID: connectionID)
        case .error(let error): core.parseError(error, connectionID: connectionID)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        core.channelError(error, connectionID: connectionID)
    }
}

@available(*, unavailable)
extension PileChannelHandler: Sendable {}
