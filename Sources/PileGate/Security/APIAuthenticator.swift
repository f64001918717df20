import Atomics
import Foundation
import Hummingbird
import Logging
import NIOCore
import YKC

/// Decides who a request comes from and whether it may proceed, and counts refusals.
///
/// Authentication is enforced once any token exists (or client certificates are mapped to
/// scopes, `apiClientCertificateScopes`); before that the API is open, which is safe only on
/// loopback — `checkListenAddress` refuses anything else unless `apiInsecure` is set. That is
/// also the bootstrap path: the first token is created on the data directory
/// (`pilegate tokens create --data DIR`) or through the still-open loopback API.
public final class APIAuthenticator: Sendable {
    public let tokens: TokenStore
    /// Client-certificate subjects (`CN=name`) and their scopes.
    let certificateScopes: [String: Set<APIScope>]
    let logger: Logger

    /// Requests without a usable credential (answered 401).
    public let unauthorized = ManagedAtomic(0)
    /// Requests and WebSocket messages with a valid credential lacking the scope or limit (403).
    public let forbidden = ManagedAtomic(0)

    /// Require credentials even with no token at all: a non-loopback API without mutual TLS or
    /// `apiInsecure` must not fall open when its last token is revoked (recovery: `--data`).
    let alwaysEnforced: Bool

    public init(tokens: TokenStore, certificateScopes: [String: [String]] = [:], alwaysEnforced: Bool = false, logger: Logger) {
        self.tokens = tokens
        self.alwaysEnforced = alwaysEnforced
        var map: [String: Set<APIScope>] = [:]
        for (subject, names) in certificateScopes { map[subject] = Set(names.compactMap(APIScope.init(rawValue:))) }
        self.certificateScopes = map
        self.logger = logger
    }

    /// Whether requests must carry a credential right now.
    public var enforced: Bool { alwaysEnforced || !certificateScopes.isEmpty || !tokens.isEmpty }

    /// Whether `config` needs `alwaysEnforced`: off loopback, without client certificates and
    /// without `apiInsecure`.
    public static func mustAlwaysEnforce(_ config: GatewayConfiguration) -> Bool {
        !isLoopback(config.apiHost) && config.apiClientCA.isEmpty && !config.apiInsecure
    }

    /// Why the API must not listen on `host` as configured, or nil. Loopback is always fine;
    /// elsewhere a credential must be required (tokens exist or client certificates are
    /// demanded) unless `apiInsecure` says the operator accepts an open API.
    public static func listenRefusal(config: GatewayConfiguration, tokensExist: Bool) -> String? {
        if isLoopback(config.apiHost) || tokensExist || !config.apiClientCA.isEmpty || config.apiInsecure { return nil }
        return "refusing to serve the API on \(config.apiHost):\(config.apiPort) without authentication: "
            + "create a token (pilegate tokens create --data \(config.dataDirectory) --name admin --scopes admin:read,admin:write), "
            + "or set apiClientCA for mutual TLS, or set apiInsecure: true to accept an open API"
    }

    static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased()
        return h == "localhost" || h == "::1" || h == "[::1]" || (h.hasPrefix("127.") && h.split(separator: ".").count == 4)
    }

    /// The principal for a bearer secret or a client certificate's CN, or why there is none.
    func principal(authorization: String?, channel: any Channel) async -> Result<APIPrincipal, Refusal> {
        if let authorization {
            let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                return .failure(Refusal(code: "invalid_token", message: "Authorization must be 'Bearer <token>'"))
            }
            guard let token = tokens.authenticate(secret: parts[1].trimmingCharacters(in: .whitespaces)) else {
                return .failure(Refusal(code: "invalid_token", message: "unknown or revoked token"))
            }
            return .success(APIPrincipal(token: token))
        }
        if !certificateScopes.isEmpty, let cn = await Self.clientCommonName(channel), let scopes = certificateScopes["CN=" + cn] {
            return .success(APIPrincipal(name: "cert:CN=\(cn)", scopes: scopes))
        }
        return .failure(Refusal(code: "unauthorized", message: "this API requires 'Authorization: Bearer <token>'"))
    }

    struct Refusal: Error {
        var code: String
        var message: String
    }

    /// The common name of the verified client certificate on this connection, if any.
    static func clientCommonName(_ channel: any Channel) async -> String? {
        await APITLS.peerCommonName(channel)
    }

    func collectMetrics(_ w: MetricsWriter) {
        w.counter("pilegate_api_auth_refusals_total", [("result", "unauthorized")], unauthorized.load(ordering: .relaxed))
        w.counter("pilegate_api_auth_refusals_total", [("result", "forbidden")], forbidden.load(ordering: .relaxed))
        w.gauge("pilegate_api_tokens", [], Double(tokens.list().count))
    }

    /// The `auth` section of `/v1/stats`.
    func statsJSON() -> JSONValue {
        .object([
            "enforced": .bool(enforced),
            "tokens": .number(Double(tokens.list().count)),
            "unauthorized": .number(Double(unauthorized.load(ordering: .relaxed))),
            "forbidden": .number(Double(forbidden.load(ordering: .relaxed))),
        ])
    }

    /// A 403 for a WebSocket message or subscription: counted and logged at debug.
    func refuse(_ message: String) {
        forbidden.wrappingIncrement(ordering: .relaxed)
        logger.debug("API request forbidden", metadata: ["reason": "\(message)"])
    }
}
