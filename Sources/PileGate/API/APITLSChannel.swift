import HummingbirdCore
import Logging
import NIOCore
import NIOSSL

/// An API connection behind TLS, like Hummingbird's `TLSChannel` except that the context is read
/// from `APITLSCredentials` for each accepted connection, so a reloaded certificate applies from
/// the next handshake without restarting the server.
struct APITLSChannel<Inner: ServerChildChannel>: ServerChildChannel {
    typealias Value = Inner.Value
    let inner: Inner
    let credentials: APITLSCredentials

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let context = credentials.context
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
        }.flatMap {
            inner.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}
