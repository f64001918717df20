import NIOCore
import NIOSSL

/// TLS on the API port: the peer certificate's subject for `apiClientCertificateScopes`.
enum APITLS {
    /// The CN of the verified client certificate on `channel`, or nil (no TLS, no certificate).
    static func peerCommonName(_ channel: any Channel) async -> String? {
        guard let certificate = try? await channel.nioSSL_peerCertificate().get() else { return nil }
        return certificate.subjectName.first(where: { $0.type == .commonName })?.value
    }
}
