import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import NATS

/// The connection handler's protocol rules without a socket: handshake, PING answers, -ERR handling.
@Suite("Connection handler")
struct NATSConnectionHandlerTests {
    final class RecordingDelegate: NATSConnectionDelegate {
        let errors = NIOLockedValueBox<[String]>([])
        let messages = NIOLockedValueBox<[NATSMessage]>([])
        func connection(received message: NATSMessage) { messages.withLockedValue { $0.append(message) } }
        func connection(receivedInfo info: ServerInfo) {}
        func connection(receivedError text: String) { errors.withLockedValue { $0.append(text) } }
        let failures = NIOLockedValueBox<[String]>([])
        func connection(failed error: any Error) { failures.withLockedValue { $0.append("\(error)") } }
    }

    func makeChannel(options: NATSClientOptions? = nil) throws -> (EmbeddedChannel, EventLoopFuture<ServerInfo>, RecordingDelegate) {
        let channel = EmbeddedChannel()
        let delegate = RecordingDelegate()
        let promise = channel.eventLoop.makePromise(of: ServerInfo.self)
        var opts = options ?? NATSClientOptions(servers: [NATSServerAddress(host: "127.0.0.1")])
        opts.authentication = options?.authentication ?? .userPassword(user: "u", password: "p\"w")
        let handler = NATSConnectionHandler(
            options: opts, server: opts.servers[0], tlsContext: nil, handshake: promise, delegate: delegate,
            logger: Logger(label: "test")
        )
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ServerOperationDecoder()))
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 4222)).wait()
        #expect(channel.isActive)
        return (channel, promise.futureResult, delegate)
    }

    func written(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    @Test("INFO → CONNECT with credentials and PING; PONG completes the handshake; server PINGs are answered")
    func handshake() throws {
        let (channel, handshake, delegate) = try makeChannel()
        try channel.writeInbound(ByteBuffer(string: "INFO {\"server_id\":\"x\",\"max_payload\":100,\"headers\":true}\r\n"))
        let connect = try written(channel)
        #expect(connect.hasPrefix("CONNECT {"))
        #expect(connect.contains(#""user":"u""#) && connect.contains(#""pass":"p\"w""#))
        #expect(connect.contains(#""headers":true"#) && connect.contains(#""no_responders":true"#))
        #expect(connect.hasSuffix("}\r\nPING\r\n"))
        try channel.writeInbound(ByteBuffer(string: "PONG\r\n"))
        #expect(try handshake.wait().maxPayload == 100)
        try channel.writeInbound(ByteBuffer(string: "PING\r\n"))
        #expect(try written(channel) == "PONG\r\n")
        try channel.writeInbound(ByteBuffer(string: "MSG a 4 2\r\nhi\r\n"))
        #expect(delegate.messages.withLockedValue { $0.map(\.string) } == ["hi"])
        _ = try? channel.finish()
    }

    @Test("-ERR during the handshake fails it with a typed error and closes")
    func handshakeError() throws {
        let (channel, handshake, _) = try makeChannel()
        try channel.writeInbound(ByteBuffer(string: "INFO {\"server_id\":\"x\",\"auth_required\":true}\r\n"))
        _ = try written(channel)
        try channel.writeInbound(ByteBuffer(string: "-ERR 'Authorization Violation'\r\n"))
        #expect(throws: NATSError.authorizationViolation("Authorization Violation")) { try handshake.wait() }
        #expect(!channel.isActive)
    }

    @Test("-ERR 'Slow Consumer' after the handshake closes the connection (the client then reconnects); a permissions error does not")
    func slowConsumerError() throws {
        let (channel, handshake, delegate) = try makeChannel()
        try channel.writeInbound(ByteBuffer(string: "INFO {\"server_id\":\"x\"}\r\nPONG\r\n"))
        _ = try handshake.wait()
        try channel.writeInbound(ByteBuffer(string: "-ERR 'Permissions Violation for Publish to \"x\"'\r\n"))
        #expect(channel.isActive)
        try channel.writeInbound(ByteBuffer(string: "-ERR 'Slow Consumer'\r\n"))
        #expect(!channel.isActive)
        #expect(delegate.errors.withLockedValue { $0 }.last == "Slow Consumer")
    }

    @Test("unanswered keepalive PINGs close a silent connection; a server that keeps sending is slow, not gone, and is kept")
    func keepaliveToleratesASlowServer() throws {
        var options = NATSClientOptions(servers: [NATSServerAddress(host: "127.0.0.1")])
        options.pingInterval = .seconds(1)
        options.maxPingsOutstanding = 2
        let (channel, handshake, _) = try makeChannel(options: options)
        let loop = try #require(channel.eventLoop as? EmbeddedEventLoop)
        try channel.writeInbound(ByteBuffer(string: "INFO {\"server_id\":\"x\"}\r\nPONG\r\n"))
        _ = try handshake.wait()
        _ = try written(channel)
        // Two PINGs go unanswered, but messages keep arriving: the connection stays.
        for _ in 0..<6 {
            loop.advanceTime(by: .seconds(1))
            try channel.writeInbound(ByteBuffer(string: "MSG a 4 2\r\nhi\r\n"))
            #expect(channel.isActive)
        }
        #expect(try written(channel) == "PING\r\nPING\r\n", "no more than maxPingsOutstanding in flight")
        // The PONGs come, late: counted down, and keepalives go on.
        try channel.writeInbound(ByteBuffer(string: "PONG\r\nPONG\r\n"))
        loop.advanceTime(by: .seconds(1))
        #expect(try written(channel) == "PING\r\n")
        // Then the server falls silent: a second PING goes unanswered, and after a whole interval
        // with nothing heard the connection is stale.
        loop.advanceTime(by: .seconds(1))
        #expect(channel.isActive)
        #expect(try written(channel) == "PING\r\n")
        loop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive, "two PINGs unanswered and nothing heard for an interval: stale")
    }

    @Test("a client that wants TLS refuses a server whose INFO does not require it")
    func tlsMismatch() throws {
        var options = NATSClientOptions(servers: [NATSServerAddress(host: "127.0.0.1", tls: true)])
        options.authentication = .none
        let (channel, handshake, _) = try makeChannel(options: options)
        try channel.writeInbound(ByteBuffer(string: "INFO {\"server_id\":\"x\"}\r\n"))
        #expect {
            try handshake.wait()
        } throws: { error in
            if case NATSError.tlsMismatch = error { return true }
            return false
        }
    }
}
