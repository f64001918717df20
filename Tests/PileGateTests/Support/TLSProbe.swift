import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// One HTTP/1.1 request over TLS on a fresh connection, the raw answer back: enough to see a
/// handshake refused, a status line and headers, as a backend's HTTP client would.
enum TLSProbe {
    struct Answer {
        var raw: String
        var status: Int {
            let parts = raw.split(separator: " ", maxSplits: 2)
            return parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        }
    }

    static func client(ca: String, cert: String? = nil, key: String? = nil) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
        if let cert, let key {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        }
        return tls
    }

    static func request(port: Int, tls: TLSConfiguration, method: String = "GET", _ path: String, token: String? = nil) async throws -> Answer {
        let context = try NIOSSLContext(configuration: tls)
        let collector = Collector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        try await channel.writeAndFlush(ByteBuffer(string: head + "\r\n"))
        try await channel.closeFuture.get()
        if let error = collector.error { throw error }
        return Answer(raw: collector.text)
    }

    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        private let lock = NSLock()
        private var bytes = ""
        private var failure: (any Error)?
        var text: String { lock.withLock { bytes } }
        var error: (any Error)? { lock.withLock { failure } }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            lock.withLock { bytes += String(buffer: buffer) }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            lock.withLock { if failure == nil && bytes.isEmpty { failure = error } }
            context.close(promise: nil)
        }
    }
}
