import NIOConcurrencyHelpers
import NIOSSL

/// The TLS pile listener's server context (`pileTLSCertificate`, `pileTLSKey`, `pileTLSClientCA`),
/// replaceable while the listener runs: a reload (`Gateway.reload(to:)`) reads the PEM files
/// again and swaps the context, so handshakes that start afterwards present the new certificate while connections
/// already established keep theirs (a session never depends on the context after its handshake).
///
/// A file that cannot be loaded leaves the current context in place: a botched rotation must not
/// take the pile port down.
public final class PileTLSCredentials: Sendable {
    private let current: NIOLockedValueBox<Loaded>

    /// The paths a context was made from, and the context.
    struct Loaded: Sendable {
        var certificate: String
        var key: String
        var clientCA: String
        var context: NIOSSLContext
    }

    public struct LoadError: Error, CustomStringConvertible {
        public var description: String
    }

    init(config: GatewayConfiguration) throws(LoadError) {
        current = NIOLockedValueBox(try Self.load(config))
    }

    /// The context for a handshake starting now (read once per accepted connection).
    var context: NIOSSLContext { current.withLockedValue { $0.context } }

    /// Whether connections must present a client certificate.
    var requiresClientCertificate: Bool { current.withLockedValue { !$0.clientCA.isEmpty } }

    /// Makes `loaded` (from `load`) the context for new handshakes: the second half of a reload
    /// that must not change anything unless every file of it loaded.
    func install(_ loaded: Loaded) {
        current.withLockedValue { $0 = loaded }
    }

    /// A server context from the PEM files, TLS 1.2 or later; with a client CA, a client
    /// certificate that CA signed is required (there is no host name to check on a pile's).
    static func load(_ config: GatewayConfiguration) throws(LoadError) -> Loaded {
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(config.pileTLSCertificate) } catch {
            throw LoadError(description: "cannot load pileTLSCertificate \(config.pileTLSCertificate): \(error)")
        }
        guard !chain.isEmpty else {
            throw LoadError(description: "pileTLSCertificate \(config.pileTLSCertificate) holds no PEM certificate")
        }
        let key: NIOSSLPrivateKey
        do { key = try NIOSSLPrivateKey(file: config.pileTLSKey, format: .pem) } catch {
            throw LoadError(description: "cannot load pileTLSKey \(config.pileTLSKey): \(error)")
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        if !config.pileTLSClientCA.isEmpty {
            let roots: [NIOSSLCertificate]
            do { roots = try NIOSSLCertificate.fromPEMFile(config.pileTLSClientCA) } catch {
                throw LoadError(description: "cannot load pileTLSClientCA \(config.pileTLSClientCA): \(error)")
            }
            guard !roots.isEmpty else {
                throw LoadError(description: "pileTLSClientCA \(config.pileTLSClientCA) holds no PEM certificate")
            }
            tls.trustRoots = .certificates(roots)
            tls.certificateVerification = .noHostnameVerification
        }
        do {
            let context = try NIOSSLContext(configuration: tls)
            return Loaded(certificate: config.pileTLSCertificate, key: config.pileTLSKey, clientCA: config.pileTLSClientCA, context: context)
        } catch {
            throw LoadError(description: "pileTLSCertificate \(config.pileTLSCertificate) and pileTLSKey \(config.pileTLSKey) do not make a TLS context: \(error)")
        }
    }
}
