import NIOCore
import YKC

/// Binds a TLS pile's client certificate to the pile id it logs in with: with `pileTLSClientCA`
/// set, a login whose pile id differs from the one the certificate names
/// (`pileTLSIdentityField`, the CN by default) is refused, counted
/// (`refusedCertificateMismatch`, `pilegate_logins_refused_total{reason="certificate_mismatch"}`)
/// and the connection closed as `certificate_mismatch`. A certificate is thus a credential for one
/// pile id, not for the fleet. Plain TCP connections and TLS without client certificates are
/// not affected.
enum PileCertificateBinding {
    /// Whether the connection of `context` may log in as `pileId`. Looks the connection's TLS
    /// observer up in the pipeline (once per login, never per frame).
    static func permits(_ pileId: PileID, context: ChannelHandlerContext, gateway: GatewayContext) -> Bool {
        guard let tls = try? context.pipeline.syncOperations.handler(type: PileTLSHandshakeObserver.self),
            tls.hasClientCertificate
        else { return true }
        let claimed = pileId.description
        guard tls.certificateIdentity != claimed else { return true }
        gateway.counters.refusedCertificateMismatch.wrappingIncrement(ordering: .relaxed)
        gateway.logger.warning(
            "login refused: the pile id is not the one its client certificate names",
            metadata: [
                "pile": "\(claimed)", "certificate": "\(tls.certificateIdentity.map { String($0.prefix(64)) } ?? "(no \(gateway.config.pileTLSIdentityField.rawValue))")",
                "address": "\(context.channel.remoteAddress?.description ?? "?")",
            ])
        return false
    }
}
