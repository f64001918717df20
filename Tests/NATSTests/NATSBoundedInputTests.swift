import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import NATS

/// A server that breaks the protocol on purpose: the client must close the connection with a clear
/// error, reconnect, and neither crash nor buffer without bound.
@Suite("Oversized and malformed server input", .timeLimit(.minutes(1)))
struct NATSBoundedInputTests {
    @Test("an oversized MSG, an unknown verb and an endless line each close the connection with a clear error; the client reconnects")
    func hostileServer() async throws {
        let server = try await ScriptedNATSServer.start(maxPayload: 1024)
        defer { server.close() }
        var options = NATSClientOptions(servers: [NATSServerAddress(host: "127.0.0.1", port: server.port)])
        options.reconnect = NATSReconnectPolicy(initialDelay: .milliseconds(20), maxDelay: .milliseconds(100))
        var logger = Logger(label: "nats-test")
        logger.logLevel = .critical
        let client = try await NATSClient.connect(options, logger: logger)

        let cases: [(bytes: ByteBuffer, error: String)] = [
            // Above max_payload (1024) plus the header allowance: refused on the control line, before any payload.
            (ByteBuffer(string: "MSG big 1 200000\r\n"), "oversized MSG size"),
            (ByteBuffer(string: "HMSG big 1 10 99999999999999999999\r\n"), "oversized HMSG size"),
            (ByteBuffer(string: "HELLO there\r\n"), "unknown operation"),
            (ByteBuffer(string: "MSG only-two-fields\r\n"), "malformed MSG line"),
            // No newline: refused once 64 KiB are buffered instead of waiting for a line end forever.
            (ByteBuffer(repeating: UInt8(ascii: "A"), count: 70_000), "control line longer than"),
            (ByteBuffer(string: "INFO {not json\r\n"), "INFO is not valid JSON"),
        ]
        for (index, item) in cases.enumerated() {
            server.sendToLatest(item.bytes)
            try await waitUntil("reconnect \(index + 1) after '\(item.error)'") {
                client.statistics.reconnects == index + 1 && client.status == .connected
            }
            let lastError = client.lastError ?? ""
            #expect(lastError.contains("protocol violation") && lastError.contains(item.error), "\(lastError)")
        }
        #expect(server.connections == cases.count + 1)
        // Still a working connection afterwards.
        try await client.flush()
        await client.close()
    }
}

/// A loopback NATS look-alike: sends INFO, answers PING with PONG, and on demand writes arbitrary bytes to
/// the newest connection.
final class ScriptedNATSServer: Sendable {
    let port: Int
    private let channel: any Channel
    private let state: NIOLockedValueBox<(count: Int, latest: (any Channel)?)>

    private init(port: Int, channel: any Channel, state: NIOLockedValueBox<(count: Int, latest: (any Channel)?)>) {
        self.port = port
        self.channel = channel
        self.state = state
    }

    static func start(maxPayload: Int) async throws -> ScriptedNATSServer {
        let state = NIOLockedValueBox<(count: Int, latest: (any Channel)?)>((0, nil))
        let info = "INFO {\"server_id\":\"scripted\",\"version\":\"2.9.10\",\"max_payload\":\(maxPayload),\"headers\":true}\r\n"
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { child in
                state.withLockedValue { $0.count += 1; $0.latest = child }
                return child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(LineHandler(info: info))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        guard let port = channel.localAddress?.port else { throw NATSError.connectionFailed("no port") }
        return ScriptedNATSServer(port: port, channel: channel, state: state)
    }

    var connections: Int { state.withLockedValue { $0.count } }

    func sendToLatest(_ bytes: ByteBuffer) {
        state.withLockedValue { $0.latest }?.writeAndFlush(bytes, promise: nil)
    }

    func close() { channel.close(promise: nil) }

    final class LineHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let info: String
        var pending = ""
        init(info: String) { self.info = info }

        func channelActive(context: ChannelHandlerContext) {
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: info)), promise: nil)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            pending += String(buffer: unwrapInboundIn(data))
            while let newline = pending.range(of: "\r\n") {
                let line = pending[..<newline.lowerBound]
                if line.hasPrefix("PING") {
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "PONG\r\n")), promise: nil)
                }
                pending = String(pending[newline.upperBound...])
            }
        }
    }
}
