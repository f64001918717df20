import NIOCore
import NIOHTTP1

/// Answers a request the HTTP parser rejects before Hummingbird has taken the connection over:
/// `400 {"error":"bad_request","message":…}`, then closes.
///
/// The API's pipeline starts with NIO's typed upgrade handler (for the WebSocket), which holds
/// the first request until it knows whether to upgrade and has no `errorCaught`: a parse error
/// in the first request (a control character such as NUL in a header value, a bad method, a
/// malformed chunk) went to the end of the pipeline unhandled, the upgrade never resolved, and
/// the connection stayed open with nothing answering and no timer — `FirstRequestDeadline` had
/// already stepped aside at the blank line. The client waited until it gave up, and each such
/// connection held a descriptor and a task for as long as the client kept it open.
///
/// Installed at the end of the pipeline right after setup, so the parser's error reaches it while
/// the upgrade is pending. The first request part that comes through means the upgrade handler
/// has finished and Hummingbird's handlers (added behind this one) own the connection, which
/// answer later parse errors themselves; this handler then removes itself.
final class MalformedRequestGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private var answered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parseError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard !answered else { return }
        answered = true
        let body = APIErrorBody("bad_request", "malformed HTTP request: \(parseError)").json
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .badRequest, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}
