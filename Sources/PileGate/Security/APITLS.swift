import Foundation
import NIOCore
import NIOSSL

/// TLS on the API port (`apiTLSCertificate`, `apiTLSKey`) and mutual TLS (`apiClientCA`): with a
/// client CA every connection must present a certificate that CA signed, or the handshake fails
/// before any HTTP is read; the certificate's CN may then stand in for a token
/// (`apiClientCertificateScopes`).
enum APITLS {
    struct LoadError: Error, CustomStringConvertible {
        var description: String
    }

    /// The server's TLS configuration, or nil when the API is plain HTTP.
    static func serverConfiguration(_ config: GatewayConfiguration) throws -> TLSConfiguration? {
        guard !config.apiTLSCertificate.isEmpty else { return nil }
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do { chain = try NIOSSLCertificate.fromPEMFile(config.apiTLSCertificate) } catch {
            throw LoadError(description: "cannot load apiTLSCertificate \(config.apiTLSCertificate): \(error)")
        }
        guard !chain.isEmpty else { throw LoadError(description: "apiTLSCertificate \(config.apiTLSCertificate) holds no PEM certificate") }
        do { key = try NIOSSLPrivateKey(file: config.apiTLSKey, format: .pem) } catch {
            throw LoadError(description: "cannot load apiTLSKey \(config.apiTLSKey): \(error)")
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        if !config.apiClientCA.isEmpty {
            let roots: [NIOSSLCertificate]
            do { roots = try NIOSSLCertificate.fromPEMFile(config.apiClientCA) } catch {
                throw LoadError(description: "cannot load apiClientCA \(config.apiClientCA): \(error)")
            }
            guard !roots.isEmpty else { throw LoadError(description: "apiClientCA \(config.apiClientCA) holds no PEM certificate") }
            tls.trustRoots = .certificates(roots)
            // Client certificates are verified against the CA and required; a client has no host
            // name to check.
            tls.certificateVerification = .noHostnameVerification
        }
        return tls
    }

    /// The CN of the verified client certificate on `channel`, or nil (no TLS, no certificate).
    static func peerCommonName(_ channel: any Channel) async -> String? {
        guard let certificate = try? await channel.nioSSL_peerCertificate().get() else { return nil }
        return certificate.subjectName.first(where: { $0.type == .commonName })?.value
    }
}
