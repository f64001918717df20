/// What the server says about itself in `INFO`: limits the client must respect (`max_payload`),
/// what it requires (`tls_required`, `auth_required`, the `nonce` to sign) and what it offers.
public struct ServerInfo: Sendable, Equatable, Decodable {
    public var serverID: String
    public var serverName: String?
    public var version: String
    public var host: String?
    public var port: Int?
    public var headers: Bool
    public var maxPayload: Int
    public var clientID: UInt64?
    public var authRequired: Bool
    public var tlsRequired: Bool
    public var jetStream: Bool
    public var nonce: String?
    public var connectURLs: [String]
    /// The server is shutting down gracefully (lame duck mode).
    public var lameDuckMode: Bool

    enum CodingKeys: String, CodingKey {
        case serverID = "server_id"
        case serverName = "server_name"
        case version, host, port, headers, nonce
        case maxPayload = "max_payload"
        case clientID = "client_id"
        case authRequired = "auth_required"
        case tlsRequired = "tls_required"
        case jetStream = "jetstream"
        case connectURLs = "connect_urls"
        case lameDuckMode = "ldm"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        serverID = try c.decodeIfPresent(String.self, forKey: .serverID) ?? ""
        serverName = try c.decodeIfPresent(String.self, forKey: .serverName)
        version = try c.decodeIfPresent(String.self, forKey: .version) ?? ""
        host = try c.decodeIfPresent(String.self, forKey: .host)
        port = try c.decodeIfPresent(Int.self, forKey: .port)
        headers = try c.decodeIfPresent(Bool.self, forKey: .headers) ?? false
        maxPayload = try c.decodeIfPresent(Int.self, forKey: .maxPayload) ?? 1_048_576
        clientID = try c.decodeIfPresent(UInt64.self, forKey: .clientID)
        authRequired = try c.decodeIfPresent(Bool.self, forKey: .authRequired) ?? false
        tlsRequired = try c.decodeIfPresent(Bool.self, forKey: .tlsRequired) ?? false
        jetStream = try c.decodeIfPresent(Bool.self, forKey: .jetStream) ?? false
        nonce = try c.decodeIfPresent(String.self, forKey: .nonce)
        connectURLs = try c.decodeIfPresent([String].self, forKey: .connectURLs) ?? []
        lameDuckMode = try c.decodeIfPresent(Bool.self, forKey: .lameDuckMode) ?? false
    }
}
