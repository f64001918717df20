import Hummingbird
import HummingbirdCore
import Logging
import NIOCore

/// An API connection as Hummingbird sets it up, with a deadline on the first request head in
/// front of it and `MalformedRequestGuard` behind it (a parse error in any request is answered
/// with the API's error document and closed instead of left hanging or answered empty).
///
/// Hummingbird's idle timeout (`HTTPConnectionStateHandler`) is installed only once the first
/// request head has been parsed (the WebSocket upgrade handler comes first), so a client that
/// connects and sends half a request line, or nothing, would hold its connection — and a file
/// descriptor — forever. `FirstRequestDeadline` closes such a connection after `requestTimeout`
/// and steps aside when the head is complete; from then on the idle timeout covers idle
/// keep-alive connections and stalled request bodies.
struct APIChildChannel<Inner: ServerChildChannel>: ServerChildChannel {
    typealias Value = Inner.Value
    let inner: Inner
    let requestTimeout: TimeAmount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        do {
            try channel.pipeline.syncOperations.addHandler(FirstRequestDeadline(timeout: requestTimeout))
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            try channel.pipeline.syncOperations.addHandler(MalformedRequestGuard())
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

/// Closes a connection whose first request head (up to the blank line) has not arrived within
/// `timeout`; removes itself once it has.
final class FirstRequestDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?
    /// The last bytes seen, to find "\r\n\r\n" across reads.
    private var tail: UInt32 = 0

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { context.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        var complete = false
        for byte in buffer.readableBytesView {
            tail = (tail << 8) | UInt32(byte)
            if tail == 0x0D0A_0D0A {
                complete = true
                break
            }
        }
        context.fireChannelRead(data)
        if complete {
            timer?.cancel()
            timer = nil
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}
