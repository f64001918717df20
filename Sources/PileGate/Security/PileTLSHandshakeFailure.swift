import NIOSSL

/// Why a pile's TLS handshake failed, as counted (`pilegate_pile_tls_handshake_failures_total`,
/// `/v1/stats` `counters.tlsHandshakeFailures`). A bounded label set: never the error text.
public enum PileTLSHandshakeFailure: String, Sendable, CaseIterable {
    /// The client did not speak TLS (plain YKC or HTTP on the TLS port).
    case notTLS = "not_tls"
    /// No protocol version or cipher in common (e.g. a client that offers only TLS 1.0).
    case noCommonProtocol = "no_common_protocol"
    /// `pileTLSClientCA` is set and the client presented no certificate.
    case noClientCertificate = "no_client_certificate"
    /// The client's certificate does not verify against `pileTLSClientCA` (another CA, expired).
    case badClientCertificate = "bad_client_certificate"
    /// The client refused our certificate (it sent an alert: unknown CA, bad certificate).
    case rejectedByClient = "rejected_by_client"
    /// Not finished within `pileTLSHandshakeTimeout`.
    case timeout
    /// The client closed the connection during the handshake.
    case closed
    /// Anything else.
    case other

    /// The reason for an error raised during the handshake, from BoringSSL's reason strings.
    static func classify(_ error: any Error) -> PileTLSHandshakeFailure {
        let text = String(describing: error)
        if text.contains("eofDuringHandshake") || text.contains("EOF during handshake") { return .closed }
        if text.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") { return .noClientCertificate }
        if text.contains("CERTIFICATE_VERIFY_FAILED") { return .badClientCertificate }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("HTTP_REQUEST") || text.contains("HTTPS_PROXY_REQUEST")
            || text.contains("PACKET_LENGTH_TOO_LONG") || text.contains("RECORD_LENGTH_MISMATCH")
        {
            return .notTLS
        }
        if text.contains("UNSUPPORTED_PROTOCOL") || text.contains("NO_SHARED_CIPHER") || text.contains("PROTOCOL_VERSION") {
            return .noCommonProtocol
        }
        if text.contains("ALERT") { return .rejectedByClient }
        if case NIOSSLError.uncleanShutdown = error { return .closed }
        return .other
    }
}
