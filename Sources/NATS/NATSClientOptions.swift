import Foundation
import NIOCore

/// How a `NATSClient` connects, authenticates, stays alive and behaves while disconnected.
///
/// Defaults suit a gateway node: reconnect forever with jittered backoff, keep up to 8 MiB of publishes
/// while disconnected, detect a dead connection within about three ping intervals (a connection on
/// which the server still sends something is kept: slow, not dead).
public struct NATSClientOptions: Sendable {
    /// Servers to try, in order (`nats://host:port`, `tls://host:port`; the port defaults to 4222).
    public var servers: [NATSServerAddress]
    /// Sent in CONNECT; shows in the server's `/connz`.
    public var name: String
    public var authentication: NATSAuthentication
    /// TLS to the server; when nil, TLS is still used if the server's INFO says `tls_required`, verified
    /// against the system trust store.
    public var tls: NATSTLSOptions?
    /// Time allowed for TCP connect plus the INFO/CONNECT/PING/PONG handshake.
    public var connectTimeout: Duration
    /// How often the client pings the server; `maxPingsOutstanding` unanswered pings close the connection
    /// once the server has also sent nothing else for a whole interval.
    public var pingInterval: Duration
    public var maxPingsOutstanding: Int
    public var reconnect: NATSReconnectPolicy
    /// Bytes of publishes (protocol bytes included) kept while disconnected; beyond it `publish` throws
    /// `NATSError.reconnectBufferExceeded` and the drop is counted.
    public var reconnectBufferBytes: Int
    /// Messages a subscription buffers for a slow reader before it drops new ones (counted per subscription).
    public var subscriptionBufferLimit: Int
    /// Timeout for `request` when the caller gives none.
    public var requestTimeout: Duration
    /// Prefix of reply subjects (`_INBOX` by default).
    public var inboxPrefix: String

    public init(
        servers: [NATSServerAddress],
        name: String = "pilegate",
        authentication: NATSAuthentication = .none,
        tls: NATSTLSOptions? = nil,
        connectTimeout: Duration = .seconds(5),
        pingInterval: Duration = .seconds(30),
        maxPingsOutstanding: Int = 2,
        reconnect: NATSReconnectPolicy = .init(),
        reconnectBufferBytes: Int = 8 * 1024 * 1024,
        subscriptionBufferLimit: Int = 65_536,
        requestTimeout: Duration = .seconds(5),
        inboxPrefix: String = "_INBOX"
    ) {
        self.servers = servers
        self.name = name
        self.authentication = authentication
        self.tls = tls
        self.connectTimeout = connectTimeout
        self.pingInterval = pingInterval
        self.maxPingsOutstanding = maxPingsOutstanding
        self.reconnect = reconnect
        self.reconnectBufferBytes = reconnectBufferBytes
        self.subscriptionBufferLimit = subscriptionBufferLimit
        self.requestTimeout = requestTimeout
        self.inboxPrefix = inboxPrefix
    }

    /// Options for one URL or a comma-separated list (`nats://a:4222,nats://b:4222`).
    public init(url: String) throws {
        let servers = try url.split(separator: ",").map { try NATSServerAddress(String($0)) }
        guard !servers.isEmpty else { throw NATSError.invalidURL(url) }
        self.init(servers: servers)
    }
}

/// One server: host, port, and whether the URL scheme asked for TLS (`tls://`).
public struct NATSServerAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var tls: Bool
    /// user:password or token from the URL (`nats://user:pass@host`, `nats://token@host`).
    var userInfo: (user: String, password: String?)?

    public init(host: String, port: Int = 4222, tls: Bool = false) {
        self.host = host
        self.port = port
        self.tls = tls
    }

    public init(_ url: String) throws {
        var rest = Substring(url.trimmingCharacters(in: .whitespaces))
        var tls = false
        if let range = rest.range(of: "://") {
            let scheme = rest[..<range.lowerBound].lowercased()
            switch scheme {
            case "nats": tls = false
            case "tls": tls = true
            default: throw NATSError.invalidURL(url)
            }
            rest = rest[range.upperBound...]
        }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        var userInfo: (String, String?)?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                userInfo = (
                    String(credentials[..<colon]), String(credentials[credentials.index(after: colon)...])
                )
            } else {
                userInfo = (String(credentials), nil)
            }
        }
        var host = String(rest)
        var port = 4222
        if rest.hasPrefix("[") {  // [::1]:4222
            guard let close = rest.firstIndex(of: "]") else { throw NATSError.invalidURL(url) }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()) else { throw NATSError.invalidURL(url) }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            guard let p = Int(rest[rest.index(after: colon)...]) else { throw NATSError.invalidURL(url) }
            port = p
        }
        guard !host.isEmpty, (1...65535).contains(port) else { throw NATSError.invalidURL(url) }
        self.init(host: host, port: port, tls: tls)
        self.userInfo = userInfo
    }

    public var description: String { "\(tls ? "tls" : "nats")://\(host):\(port)" }

    public static func == (lhs: NATSServerAddress, rhs: NATSServerAddress) -> Bool {
        lhs.host == rhs.host && lhs.port == rhs.port && lhs.tls == rhs.tls
    }
}

/// TLS to the server. The server's certificate is checked against `caFile` (PEM) when given, else
/// against the system trust store, and its name against the host (or the IP address when the host is one).
public struct NATSTLSOptions: Sendable, Equatable {
    public var caFile: String?
    /// Client certificate and key (PEM) for servers that verify clients (`verify: true`).
    public var certificateFile: String?
    public var privateKeyFile: String?

    public init(caFile: String? = nil, certificateFile: String? = nil, privateKeyFile: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
    }
}

/// Reconnect backoff: the n-th consecutive failed attempt waits `min(maxDelay, initialDelay · 2ⁿ)`,
/// multiplied by a random factor in `1 - jitter … 1`, so nodes that lost the same server do not all
/// come back in the same millisecond.
public struct NATSReconnectPolicy: Sendable, Equatable {
    public var initialDelay: Duration
    public var maxDelay: Duration
    /// 0 … 1.
    public var jitter: Double
    /// nil: forever.
    public var maxAttempts: Int?

    public init(
        initialDelay: Duration = .milliseconds(100), maxDelay: Duration = .seconds(5), jitter: Double = 0.5,
        maxAttempts: Int? = nil
    ) {
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.jitter = min(max(jitter, 0), 1)
        self.maxAttempts = maxAttempts
    }

    /// The wait before attempt `attempt` (0-based) of a reconnect.
    public func delay(attempt: Int) -> Duration {
        let initial = Double(initialDelay.components.seconds) + Double(initialDelay.components.attoseconds) / 1e18
        let maximum = Double(maxDelay.components.seconds) + Double(maxDelay.components.attoseconds) / 1e18
        let base = min(maximum, initial * pow(2, Double(min(attempt, 30))))
        let factor = 1 - jitter * Double.random(in: 0...1)
        return .nanoseconds(Int64(base * factor * 1e9))
    }
}
