import NIOConcurrencyHelpers
import NIOCore
import YKC

/// Watches a misbehaving connection: bytes the gateway sent, whether a login reply (0x02) came,
/// and the close. It never answers anything.
final class MisbehaviourObserver: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    struct State {
        var bytesReceived = 0
        var loggedIn = false
        var closed = false
        var parser = YKCFrameParser()
    }

    let state = NIOLockedValueBox(State())

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        state.withLockedValue { s in
            s.bytesReceived += buffer.readableBytes
            while !s.loggedIn, let event = s.parser.next(&buffer) {
                if case .frame(let frame) = event, frame.code == 0x02 { s.loggedIn = true }
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        state.withLockedValue { $0.closed = true }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
