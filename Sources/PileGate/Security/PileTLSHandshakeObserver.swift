import Logging
import NIOCore
import NIOSSL
import NIOTLS

/// Sits right behind the `NIOSSLServerHandler` of a TLS pile connection: bounds the handshake's
/// time, counts its outcome, and keeps what the client certificate says the pile is.
///
/// A stalled handshake (nothing sent, or half a ClientHello) costs one connection slot, counted in
/// `maxPendingLogins` like any connection that has not logged in, and BoringSSL's bounded handshake
/// buffer, for at most `pileTLSHandshakeTimeout`; then the connection is closed as a login timeout
/// and counted as a `timeout` handshake failure. One timer per handshake, cancelled when it ends.
///
/// A connection the gateway itself closes before the handshake ends (refused at admission, shut
/// down) is not a handshake failure: the close passes through here on its way out and is counted
/// where it was decided.
final class PileTLSHandshakeObserver: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let gateway: GatewayContext
    private let timeout: TimeAmount
    private let identityField: PileTLSIdentityField
    private var timer: Scheduled<Void>?
    private var finished = false

    /// The pile id the verified client certificate names (`pileTLSIdentityField`), or nil when
    /// the client presented none (no `pileTLSClientCA`) or the handshake has not completed.
    private(set) var certificateIdentity: String?
    /// True once the client presented a certificate that verified against `pileTLSClientCA`.
    private(set) var hasClientCertificate = false

    init(gateway: GatewayContext, timeout: TimeAmount, identityField: PileTLSIdentityField) {
        self.gateway = gateway
        self.timeout = timeout
        self.identityField = identityField
    }

    func channelActive(context: ChannelHandlerContext) {
        let loop = context.eventLoop.assumeIsolated()
        timer = loop.scheduleTask(in: timeout) { [self] in
            guard !finished else { return }
            fail(.timeout, context: context, detail: "no completed handshake within \(timeout.nanoseconds / 1_000_000) ms")
            // Closed as a login timeout by the session (it has not logged in, by construction).
            context.fireUserInboundEventTriggered(SessionCommand.close(.loginTimeout))
        }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls, !finished {
            finished = true
            timer?.cancel()
            timer = nil
            gateway.counters.tlsHandshakes.wrappingIncrement(ordering: .relaxed)
            if let certificate = try? context.pipeline.syncOperations.nioSSL_peerCertificate() {
                hasClientCertificate = true
                certificateIdentity = identityField.value(in: certificate)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !finished { fail(PileTLSHandshakeFailure.classify(error), context: context, detail: "\(error)") }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        if !finished { fail(.closed, context: context, detail: "closed during the handshake") }
        context.fireChannelInactive()
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if !finished {
            finished = true
            timer?.cancel()
            timer = nil
        }
        context.close(mode: mode, promise: promise)
    }

    private func fail(_ reason: PileTLSHandshakeFailure, context: ChannelHandlerContext, detail: String) {
        finished = true
        timer?.cancel()
        timer = nil
        gateway.counters.tlsHandshakeFailures[reason]?.wrappingIncrement(ordering: .relaxed)
        gateway.logger.debug(
            "pile TLS handshake failed",
            metadata: [
                "reason": "\(reason.rawValue)", "address": "\(context.channel.remoteAddress?.description ?? "?")",
                "error": "\(detail.prefix(300))",
            ])
    }
}
