import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// The API's request context: Hummingbird's WebSocket-capable context plus the connection's
/// channel, which the backend hub writes events to directly from the event loop, many frames
/// per flush (the async outbound writer costs a task hop and a flush per frame).
public struct APIRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>
    /// The HTTP connection; after a WebSocket upgrade, the WebSocket's channel.
    public let channel: any Channel
    /// Who is calling, once `APIAuthMiddleware` authenticated the request; nil while the API
    /// runs without authentication (no tokens, no certificate scopes).
    public var principal: APIPrincipal?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.webSocket = .init()
        self.channel = source.channel
    }
}
