import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import YKC

/// A bare TLS client on the pile port: raw YKC bytes inside TLS, the handshake's outcome and the
/// server certificate it saw, for tests of the TLS pile listener.
final class TLSPileClient: @unchecked Sendable {
    let channel: any Channel
    private let received: NIOLockedValueBoxWrapper
    private let events: Events

    /// A client context trusting `ca`, presenting `cert`/`key` when given; no host name check.
    static func context(ca: String, cert: String? = nil, key: String? = nil) throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .noHostnameVerification
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
        if let cert, let key {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        }
        return try NIOSSLContext(configuration: tls)
    }

    /// Connects and starts the handshake; `handshake()` waits for its outcome.
    static func connect(port: Int, context: NIOSSLContext) async throws -> TLSPileClient {
        let box = NIOLockedValueBoxWrapper()
        let events = Events()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    try ch.pipeline.syncOperations.addHandler(Collector(box: box, events: events))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return TLSPileClient(channel: channel, received: box, events: events)
    }

    private init(channel: any Channel, received: NIOLockedValueBoxWrapper, events: Events) {
        self.channel = channel
        self.received = received
        self.events = events
    }

    /// Waits until the handshake completed (true) or the connection failed or closed (false).
    func handshake(timeout: TimeInterval = 10) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if events.completed { return true }
            if events.failed || received.closed { return false }
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        return events.completed
    }

    /// The CN of the certificate the server presented.
    func serverCommonName() async throws -> String? {
        let certificate = try await channel.nioSSL_peerCertificate().get()
        return certificate?.subjectName.first(where: { $0.type == .commonName })?.value
    }

    func send(_ frame: YKCFrame) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: frame.bytes))
    }

    var receivedBytes: [UInt8] { received.bytes }
    var isClosed: Bool { received.closed }
    var error: String? { events.error }

    func close() async { try? await channel.close() }

    final class Events: @unchecked Sendable {
        private let lock = NSLock()
        private var _completed = false
        private var _error: String?
        var completed: Bool { lock.withLock { _completed } }
        var failed: Bool { lock.withLock { _error != nil } }
        var error: String? { lock.withLock { _error } }
        func complete() { lock.withLock { _completed = true } }
        func fail(_ e: String) { lock.withLock { if _error == nil { _error = e } } }
    }

    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let box: NIOLockedValueBoxWrapper
        let events: Events
        init(box: NIOLockedValueBoxWrapper, events: Events) {
            self.box = box
            self.events = events
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            box.append(Array(unwrapInboundIn(data).readableBytesView))
        }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let e = event as? TLSUserEvent, case .handshakeCompleted = e { events.complete() }
            context.fireUserInboundEventTriggered(event)
        }
        func channelInactive(context: ChannelHandlerContext) { box.markClosed() }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            events.fail("\(error)")
            context.close(promise: nil)
        }
    }
}
