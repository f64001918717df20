import Logging
import NIOCore
import NIOSSL

/// Receives what the connection's handler decodes: messages, INFO updates and asynchronous `-ERR`s.
/// Called on the channel's event loop; implementations must not block.
protocol NATSConnectionDelegate: AnyObject, Sendable {
    func connection(received message: NATSMessage)
    func connection(receivedInfo info: ServerInfo)
    func connection(receivedError text: String)
    /// The connection is being closed because of `error` (a protocol violation, a TLS failure…).
    func connection(failed error: any Error)
}

/// Asks the handler to send a PING and complete `promise` on its PONG: a flush barrier, because the
/// server answers in order, so every operation written before the PING has been processed.
struct PingRequest: Sendable {
    let promise: EventLoopPromise<Void>
}

/// Tells the handler that the handshake took too long.
struct HandshakeTimedOut: Sendable {}

/// One connection's protocol logic on its event loop: the INFO → (TLS upgrade) → CONNECT → PING → PONG
/// handshake, answers to server PINGs, keepalive PINGs that detect a dead connection, PONG-ordered flush
/// barriers, and routing of MSG/HMSG/INFO/-ERR to the client.
final class NATSConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ServerOperation
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case awaitingInfo
        case awaitingPong(ServerInfo)
        case connected
        case closed
    }

    private var state = State.awaitingInfo
    private let options: NATSClientOptions
    private let server: NATSServerAddress
    private let tlsContext: NIOSSLContext?
    private let handshake: EventLoopPromise<ServerInfo>
    private let delegate: any NATSConnectionDelegate
    private let logger: Logger
    /// One entry per PING in flight, in order: nil for keepalives, a promise for flush barriers.
    private var pongWaiters = CircularBuffer<EventLoopPromise<Void>?>()
    private var pingsOutstanding = 0
    /// Whether the server sent anything since the last keepalive tick.
    private var heardSinceKeepalive = false
    private var keepalive: RepeatedTask?
    private var context: ChannelHandlerContext?

    init(
        options: NATSClientOptions, server: NATSServerAddress, tlsContext: NIOSSLContext?,
        handshake: EventLoopPromise<ServerInfo>, delegate: any NATSConnectionDelegate, logger: Logger
    ) {
        self.options = options
        self.server = server
        self.tlsContext = tlsContext
        self.handshake = handshake
        self.delegate = delegate
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        heardSinceKeepalive = true
        switch unwrapInboundIn(data) {
        case .message(let message):
            delegate.connection(received: message)
        case .ping:
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(staticString: "PONG\r\n")), promise: nil)
        case .pong:
            pingsOutstanding = 0
            switch state {
            case .awaitingPong(let info):
                state = .connected
                startKeepalive(context: context)
                handshake.succeed(info)
            case .connected:
                if let waiter = pongWaiters.popFirst() { waiter?.succeed() }
            case .awaitingInfo, .closed:
                break
            }
        case .ok:
            break
        case .info(let info):
            switch state {
            case .awaitingInfo:
                do {
                    try startSession(context: context, info: info)
                    state = .awaitingPong(info)
                } catch {
                    failHandshake(context: context, error: error)
                }
            case .connected, .awaitingPong:
                delegate.connection(receivedInfo: info)
            case .closed:
                break
            }
        case .error(let text):
            switch state {
            case .awaitingInfo, .awaitingPong:
                failHandshake(context: context, error: Self.error(for: text))
            case .connected:
                logger.warning("nats server error", metadata: ["error": "\(text)", "server": "\(server)"])
                delegate.connection(receivedError: text)
                // Permission errors leave the connection usable; every other -ERR (slow consumer,
                // stale connection, maximum payload…) is followed by the server closing it: close first
                // so the client starts reconnecting at once.
                if !text.lowercased().hasPrefix("permissions violation") {
                    context.close(promise: nil)
                }
            case .closed:
                break
            }
        }
    }

    /// After the first INFO: upgrade to TLS when either side asks for it, then CONNECT and PING.
    private func startSession(context: ChannelHandlerContext, info: ServerInfo) throws {
        let wantTLS = server.tls || options.tls != nil
        if wantTLS && !info.tlsRequired {
            throw NATSError.tlsMismatch("the client requires TLS but the server does not offer it")
        }
        if info.tlsRequired {
            let sslContext = try tlsContext ?? NIOSSLContext(configuration: .makeClientConfiguration())
            let hostname = Self.isIPAddress(server.host) ? nil : server.host
            let tlsHandler = try NIOSSLClientHandler(context: sslContext, serverHostname: hostname)
            try context.pipeline.syncOperations.addHandler(tlsHandler, position: .first)
        }
        var buffer = context.channel.allocator.buffer(capacity: 256)
        try ClientProtocol.writeConnect(
            options: options, server: server, tls: info.tlsRequired, nonce: info.nonce, into: &buffer
        )
        buffer.writeStaticString("PING\r\n")
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    private func failHandshake(context: ChannelHandlerContext, error: any Error) {
        state = .closed
        handshake.fail(error)
        context.close(promise: nil)
    }

    private func startKeepalive(context: ChannelHandlerContext) {
        let interval = TimeAmount(options.pingInterval)
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        keepalive = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            loopBound.value.sendKeepalive()
        }
    }

    /// Sends a keepalive PING, or closes the connection when too many went unanswered and the server
    /// sent nothing for a whole interval (the socket may look open for minutes after the server or the
    /// network died). A server that keeps sending is slow, not gone: its PONGs wait behind what this
    /// client sent it, as when it is starved of CPU in a reconnect storm, and reconnecting would only
    /// add a resubscription and a resync to its load (seen at 300,000 piles, docs/BENCHMARKS.md).
    private func sendKeepalive() {
        guard let context, case .connected = state else { return }
        let heard = heardSinceKeepalive
        heardSinceKeepalive = false
        if pingsOutstanding >= options.maxPingsOutstanding {
            if heard { return }
            logger.warning("nats connection stale: pings unanswered", metadata: ["server": "\(server)"])
            delegate.connection(receivedError: "Stale Connection (client)")
            context.close(promise: nil)
            return
        }
        pingsOutstanding += 1
        pongWaiters.append(nil)
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(staticString: "PING\r\n")), promise: nil)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if let ping = event as? PingRequest {
            guard case .connected = state else {
                ping.promise.fail(NATSError.connectionClosed)
                promise?.succeed()
                return
            }
            pongWaiters.append(ping.promise)
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(staticString: "PING\r\n")), promise: nil)
            promise?.succeed()
        } else if event is HandshakeTimedOut {
            switch state {
            case .awaitingInfo, .awaitingPong: failHandshake(context: context, error: NATSError.timeout)
            case .connected, .closed: break
            }
            promise?.succeed()
        } else {
            context.triggerUserOutboundEvent(event, promise: promise)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        switch state {
        case .awaitingInfo, .awaitingPong:
            handshake.fail(NATSError.connectionClosed)
        case .connected, .closed:
            break
        }
        state = .closed
        keepalive?.cancel()
        keepalive = nil
        while let waiter = pongWaiters.popFirst() { waiter?.fail(NATSError.connectionClosed) }
        context.fireChannelInactive()
    }

    /// A decoding error (an oversized or malformed server line) or a socket/TLS error: the connection is
    /// closed and the client reconnects; the error is kept as the client's `lastError`.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch state {
        case .awaitingInfo, .awaitingPong:
            logger.debug("nats connection error", metadata: ["error": "\(error)", "server": "\(server)"])
            failHandshake(context: context, error: error)
        case .connected:
            logger.warning("nats connection error; reconnecting", metadata: ["error": "\(error)", "server": "\(server)"])
            delegate.connection(failed: error)
            state = .closed
            context.close(promise: nil)
        case .closed:
            context.close(promise: nil)
        }
    }

    /// Maps a handshake `-ERR` to the typed error a caller can act on.
    static func error(for text: String) -> NATSError {
        let lower = text.lowercased()
        if lower.contains("authorization violation") || lower.contains("authentication") {
            return .authorizationViolation(text)
        }
        if lower.contains("tls required") || lower.contains("secure connection") {
            return .tlsMismatch(text)
        }
        return .serverError(text)
    }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}

extension TimeAmount {
    /// A NIO time amount from a Swift `Duration` (nanosecond precision, clamped at zero).
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
    }
}
