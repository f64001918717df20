import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Answers a request the HTTP parser rejects with `400 {"error":"bad_request","message":…}`
/// and closes the connection — the first request of a connection and every later one on it.
///
/// The API's pipeline starts with NIO's typed upgrade handler (for the WebSocket), which holds
/// the first request until it knows whether to upgrade and has no `errorCaught`: a parse error
/// in the first request (a control character such as NUL in a header value, a bad method, a
/// malformed chunk) went to the end of the pipeline unhandled, the upgrade never resolved, and
/// the connection stayed open with nothing answering and no timer — `FirstRequestDeadline` had
/// already stepped aside at the blank line. On later requests of a keep-alive connection
/// Hummingbird answers a parse error itself, but with an empty 400 unlike every other error of
/// the API; this handler answers those too, so a client always gets the error document.
///
/// Installed at the end of the pipeline right after setup, so the parser's error reaches it while
/// the upgrade is pending; Hummingbird's HTTP handlers are added behind it. A connection upgraded
/// to a WebSocket has no HTTP parser any more: at the first message that passes (either way) this
/// handler sees whether the WebSocket frame encoder is in the pipeline and then removes itself.
///
/// On an HTTP connection it follows requests and responses, so that its answer never cuts into
/// a response being written: a parse error while an earlier request's response is still owed
/// (pipelined requests) is answered after that response's end. Once it has answered, whatever
/// Hummingbird still writes is dropped (the connection is closing).
final class MalformedRequestGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum Mode {
        /// Nothing has passed yet (the upgrade handler still holds the first request).
        case undecided
        case http
        /// The 400 is written; the connection is closing.
        case answered
    }

    private var mode = Mode.undecided
    /// Request heads read whose response has not ended yet.
    private var owed = 0
    /// The last request's body is still arriving (its head came, its end not).
    private var requestOpen = false
    /// A final (non-1xx) response head was written and its end not yet.
    private var responseStarted = false
    /// A parse error waiting for an owed response to end before it is answered.
    private var pendingError: HTTPParserError?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch mode {
        case .answered:
            return
        case .undecided:
            guard isHTTP(context) else {
                context.fireChannelRead(data)
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                return
            }
            mode = .http
        case .http:
            break
        }
        switch unwrapInboundIn(data) {
        case .head:
            owed += 1
            requestOpen = true
        case .end:
            requestOpen = false
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch mode {
        case .answered:
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        case .undecided:
            guard isHTTP(context) else {
                context.write(data, promise: promise)
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                return
            }
            mode = .http
        case .http:
            break
        }
        var ended = false
        switch unwrapOutboundIn(data) {
        case .head(let head):
            if head.status.code >= 200 { responseStarted = true }
        case .end:
            owed = max(0, owed - 1)
            responseStarted = false
            ended = true
        case .body:
            break
        }
        context.write(data, promise: promise)
        if ended, let error = pendingError, canAnswerNow {
            answer(context: context, error: error)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parseError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard mode != .answered, pendingError == nil else { return }
        if canAnswerNow {
            answer(context: context, error: parseError)
        } else {
            pendingError = parseError
        }
    }

    /// No response is owed but possibly the broken request's own (its body was still arriving
    /// and nothing of its response is written): the answer cuts into nothing.
    private var canAnswerNow: Bool {
        owed == 0 || (owed == 1 && requestOpen && !responseStarted)
    }

    /// Whether the connection stayed HTTP (was not upgraded to a WebSocket). Asked at the first
    /// message through this handler, when the upgrade handler has finished either way.
    private func isHTTP(_ context: ChannelHandlerContext) -> Bool {
        (try? context.pipeline.syncOperations.handler(type: WebSocketFrameEncoder.self)) == nil
    }

    private func answer(context: ChannelHandlerContext, error: HTTPParserError) {
        mode = .answered
        pendingError = nil
        let body = APIErrorBody("bad_request", "malformed HTTP request: \(error)").json
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .badRequest, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}
