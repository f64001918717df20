import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTPS request with a custom CA and/or a client certificate, for `--cacert/--cert/--key`:
/// Foundation's `URLSession` on Linux takes neither, and an API with mutual TLS needs both. One
/// connection per request (`Connection: close`), the whole answer collected (bounded at 64 MiB).
enum TLSHTTPClient {
    struct Options: Sendable, Equatable {
        var caFile: String?
        var certFile: String?
        var keyFile: String?
        var isEmpty: Bool { caFile == nil && certFile == nil && keyFile == nil }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static let maxBodyBytes = 64 << 20

    static func configuration(_ options: Options) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        do {
            if let ca = options.caFile { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca)) }
            if let cert = options.certFile {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: options.keyFile ?? cert, format: .pem))
            }
        } catch {
            throw Failure(description: "cannot load the TLS files: \(error)")
        }
        return tls
    }

    /// Sends the request; returns the status and body.
    static func send(
        url: URL, method: String, headers: [(String, String)], body: Data?, timeout: TimeInterval, options: Options
    ) async throws -> (status: Int, body: Data) {
        guard let host = url.host else { throw Failure(description: "no host in \(url)") }
        let port = url.port ?? 443
        let context = try NIOSSLContext(configuration: configuration(options))
        let isIP = host.allSatisfy { $0.isNumber || $0 == "." } || host.contains(":")
        let collector = Collector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(Int64(timeout * 1000)))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: isIP ? nil : host))
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: host, port: port).get()
        var path = url.path.isEmpty ? "/" : url.path
        if let query = url.query { path += "?" + query }
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path)
        head.headers.add(name: "Host", value: url.port.map { "\(host):\($0)" } ?? host)
        head.headers.add(name: "Connection", value: "close")
        head.headers.add(name: "Content-Length", value: String(body?.count ?? 0))
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body, !body.isEmpty { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        let deadline = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) { channel.close(promise: nil) }
        try? await channel.closeFuture.get()
        deadline.cancel()
        return try collector.result()
    }

    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart
        private let lock = NSLock()
        private var status: Int?
        private var body = Data()
        private var complete = false
        private var failure: (any Error)?

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): lock.withLock { status = Int(h.status.code) }
            case .body(let b):
                let tooLarge = lock.withLock { () -> Bool in
                    body.append(contentsOf: b.readableBytesView)
                    return body.count > TLSHTTPClient.maxBodyBytes
                }
                if tooLarge { context.close(promise: nil) }
            case .end:
                lock.withLock { complete = true }
                context.close(promise: nil)
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            lock.withLock { if failure == nil { failure = error } }
            context.close(promise: nil)
        }

        func result() throws -> (status: Int, body: Data) {
            try lock.withLock {
                if complete, let status { return (status, body) }
                if let failure { throw failure }
                throw Failure(description: "the connection closed before a complete answer")
            }
        }
    }
}
