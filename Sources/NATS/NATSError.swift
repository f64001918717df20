/// Every failure the NATS client reports, as one typed error so callers can switch on what went
/// wrong (retry a timeout, give up on an authorization violation) instead of parsing strings.
public enum NATSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A server URL that is not `nats://host:port` or `tls://host:port`.
    case invalidURL(String)
    /// A subject or queue name that is empty or holds whitespace (it would corrupt the text protocol).
    case invalidSubject(String)
    /// A message larger than the server's `max_payload` (from its INFO); the server would close the connection.
    case payloadTooLarge(size: Int, maxPayload: Int)
    /// The client was closed (by `close()` or after giving up reconnecting).
    case connectionClosed
    /// No server could be reached (initial connect), with the last cause.
    case connectionFailed(String)
    /// A request, flush or handshake did not complete in time.
    case timeout
    /// Nobody subscribes to the request's subject: the server said so at once (status 503).
    case noResponders(subject: String)
    /// The server refused the credentials (`-ERR 'Authorization Violation'`).
    case authorizationViolation(String)
    /// The server required TLS or the client required TLS the server does not offer.
    case tlsMismatch(String)
    /// Any other `-ERR` from the server.
    case serverError(String)
    /// The client is disconnected and the bytes waiting for the reconnect would exceed their budget; the
    /// message was not queued (and is counted in `NATSClientStatistics.droppedPublishes`).
    case reconnectBufferExceeded(budget: Int)
    /// The server sent bytes the client cannot parse.
    case protocolViolation(String)
    /// A JetStream API call answered with an error document.
    case jetStream(JetStreamAPIError)
    /// A JetStream answer that could not be decoded.
    case invalidResponse(String)

    public var description: String {
        switch self {
        case .invalidURL(let url): "invalid NATS URL: \(url)"
        case .invalidSubject(let subject): "invalid subject: '\(subject)'"
        case .payloadTooLarge(let size, let max): "payload of \(size) bytes exceeds max_payload \(max)"
        case .connectionClosed: "connection closed"
        case .connectionFailed(let cause): "could not connect: \(cause)"
        case .timeout: "timed out"
        case .noResponders(let subject): "no responders on \(subject)"
        case .authorizationViolation(let text): "authorization violation: \(text)"
        case .tlsMismatch(let text): "TLS mismatch: \(text)"
        case .serverError(let text): "server error: \(text)"
        case .reconnectBufferExceeded(let budget): "reconnect buffer of \(budget) bytes is full"
        case .protocolViolation(let text): "protocol violation: \(text)"
        case .jetStream(let error): "JetStream: \(error)"
        case .invalidResponse(let text): "invalid response: \(text)"
        }
    }
}

/// The error document of a JetStream API answer: `{"error":{"code":…,"err_code":…,"description":…}}`.
/// `errorCode` is the stable JetStream code (10059 stream not found, 10071 wrong last sequence, …).
public struct JetStreamAPIError: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    /// The HTTP-like status (400, 404, 503…).
    public var code: Int
    /// JetStream's own error code, stable across server versions.
    public var errorCode: Int
    public var errorDescription: String

    /// Stream not found.
    public static let streamNotFound = 10059
    /// Consumer not found.
    public static let consumerNotFound = 10014
    /// No message found (a KV key without a value).
    public static let noMessageFound = 10037
    /// Wrong last sequence: a compare-and-set failed.
    public static let wrongLastSequence = 10071
    /// A stream with this name exists with a different configuration.
    public static let streamNameInUse = 10058

    public init(code: Int, errorCode: Int, errorDescription: String) {
        self.code = code
        self.errorCode = errorCode
        self.errorDescription = errorDescription
    }

    enum CodingKeys: String, CodingKey {
        case code
        case errorCode = "err_code"
        case errorDescription = "description"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        code = try container.decodeIfPresent(Int.self, forKey: .code) ?? 0
        errorCode = try container.decodeIfPresent(Int.self, forKey: .errorCode) ?? 0
        errorDescription = try container.decodeIfPresent(String.self, forKey: .errorDescription) ?? ""
    }

    public var description: String { "\(errorDescription) (status \(code), err_code \(errorCode))" }
}
