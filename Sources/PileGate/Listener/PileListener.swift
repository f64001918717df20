import Logging
import NIOCore
import NIOPosix
import NIOSSL
import YKC

/// The TCP listener piles connect to, tuned for hundreds of thousands of long-lived, mostly idle
/// connections: a listen backlog sized for a reconnect wave, many accepts per wake-up, a small
/// fixed receive buffer (NIO keeps each channel's receive buffer, which sets part of the idle
/// cost per pile; see `receiveBufferBytes`), and accept pacing.
///
/// The same listener serves TLS piles on `pileTLSPort` when given `PileTLSCredentials`: each
/// accepted connection gets a TLS handler made from the credentials' current context (so a
/// certificate reloaded on SIGHUP applies from the next handshake) and a handshake observer,
/// in front of the same session handler.
public final class PileListener: Sendable {
    public let channel: any Channel

    /// The bound address (the port matters when configured as 0).
    public var localAddress: SocketAddress? { channel.localAddress }

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// The receive buffer of a pile connection. NIO keeps one per channel for the connection's
    /// life (its storage object and 64 bytes: 160 B of heap with glibc's headers, against 352 B
    /// at 256), so this is an idle pile's cost, not a per-read one. 64 bytes hold a login (38 B)
    /// or a round of two guns' heartbeats (2 × 17 B) in one read; a larger frame (a 0x13 of
    /// 68 B, a 0x3B of 166 B) arrives over two or three reads of the same readable event (a full
    /// buffer makes NIO read again, up to `maxMessagesPerRead` times, and level-triggered epoll
    /// wakes it for the rest), and the session handler joins the pieces (`PileSessionHandler`).
    /// ByteBuffer capacities are powers of two, so this is the step below 128.
    static let receiveBufferBytes = 64
    /// The receive buffer of a TLS pile connection: TLS records carry ≈ 30 bytes of overhead
    /// each and a handshake's records are hundreds of bytes, while BoringSSL's own state per
    /// connection is many kilobytes, so the plain listener's saving would cost reads for little.
    static let tlsReceiveBufferBytes = 256

    public static func bind(
        gateway: GatewayContext, group: any EventLoopGroup, tls: PileTLSCredentials? = nil
    ) async throws -> PileListener {
        let config = gateway.config
        let port = tls == nil ? config.pilePort : config.pileTLSPort
        var bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: Int32(clamping: config.listenBacklog))
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.maxMessagesPerRead, value: UInt(config.acceptsPerRead))
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptPacer(admission: gateway.admission))
                    try channel.pipeline.syncOperations.addHandler(AcceptNumbering(order: gateway.acceptOrder))
                }
            }
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            // A small fixed receive buffer (`receiveBufferBytes`): NIO keeps each channel's buffer
            // for its life and only ever grows it, so its size is paid by every idle pile.
            .childChannelOption(
                .recvAllocator,
                value: FixedSizeRecvByteBufferAllocator(capacity: tls == nil ? receiveBufferBytes : tlsReceiveBufferBytes))
            .childChannelOption(
                .writeBufferWaterMark,
                value: .init(low: config.writeBufferHighWater / 2, high: config.writeBufferHighWater))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        // Read per connection: a reload applies from the next handshake.
                        let live = gateway.config
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context))
                        try channel.pipeline.syncOperations.addHandler(
                            PileTLSHandshakeObserver(
                                gateway: gateway, timeout: TimeAmount.fromSeconds(live.pileTLSHandshakeTimeout),
                                identityField: live.pileTLSIdentityField))
                    }
                    try configurePipeline(channel: channel, gateway: gateway)
                }
            }
        if config.socketSendBuffer > 0 {
            bootstrap = bootstrap.childChannelOption(.socketOption(.so_sndbuf), value: config.socketSendBuffer)
        }
        if config.socketReceiveBuffer > 0 {
            bootstrap = bootstrap.childChannelOption(.socketOption(.so_rcvbuf), value: config.socketReceiveBuffer)
        }
        let channel = try await bootstrap.bind(host: config.pileHost, port: port).get()
        return PileListener(channel: channel)
    }

    /// The one handler of a pile connection: the session, which also frames the byte stream.
    /// Login timeout and liveness are checked by the event loop's `LivenessSweeper`, not a
    /// handler per connection.
    static func configurePipeline(channel: any Channel, gateway: GatewayContext) throws {
        try channel.pipeline.syncOperations.addHandler(PileSessionHandler(gateway: gateway))
    }

    /// Stops accepting new connections (the listening socket closes); existing ones stay.
    public func stopAccepting() async {
        try? await channel.close()
    }
}
