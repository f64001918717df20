import NIOConcurrencyHelpers
import NIOSSL

/// The API's TLS server context (`apiTLSCertificate`, `apiTLSKey`, `apiClientCA`), replaceable
/// while the API runs: a reload (SIGHUP, `POST /v1/config/reload`) reads the PEM files again and
/// connections accepted afterwards handshake with the new context; open connections and
/// WebSockets keep theirs.
final class APITLSCredentials: Sendable {
    private let current: NIOLockedValueBox<NIOSSLContext>

    init(_ context: NIOSSLContext) {
        current = NIOLockedValueBox(context)
    }

    /// The context for a connection accepted now.
    var context: NIOSSLContext { current.withLockedValue { $0 } }

    /// A context from the files `config` names (nil when the API is plain HTTP); throws, naming
    /// the setting and the file, when one does not load.
    static func load(_ config: GatewayConfiguration) throws -> NIOSSLContext? {
        guard let tls = try APITLS.serverConfiguration(config) else { return nil }
        do { return try NIOSSLContext(configuration: tls) } catch {
            throw APITLS.LoadError(description: "apiTLSCertificate \(config.apiTLSCertificate) and apiTLSKey \(config.apiTLSKey) do not make a TLS context: \(error)")
        }
    }

    func install(_ context: NIOSSLContext) {
        current.withLockedValue { $0 = context }
    }
}
