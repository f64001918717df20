import Logging
import NIOCore
import NIOPosix
import NIOSSL
import YKC

/// The TCP listener piles connect to, tuned for hundreds of thousands of long-lived, mostly idle
/// connections: a listen backlog sized for a reconnect wave, many accepts per wake-up, a small
/// fixed receive buffer (pile frames are ≤ 259 bytes, and NIO keeps each channel's receive
/// buffer, which sets the idle cost per pile), and accept pacing.
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
            // A fixed 256-byte receive buffer: NIO keeps each channel's buffer for its life and
            // only ever grows it, so an adaptive allocator leaves the size of a pile's largest
            // burst (up to its maximum) on every idle connection. Pile frames are ≤ 259 bytes and
            // a read of more is finished by the next one (level-triggered).
            .childChannelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 256))
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
