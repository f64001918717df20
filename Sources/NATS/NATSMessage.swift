import NIOCore

/// One message as delivered to a subscription or as a request's reply.
///
/// The payload is a `ByteBuffer` slice of what the socket read, so delivery copies no payload bytes;
/// `string` and `bytes` are conveniences for small messages.
public struct NATSMessage: Sendable, Equatable {
    public var subject: String
    /// Where an answer goes (requests, JetStream acks), if the publisher asked for one.
    public var replyTo: String?
    public var headers: NATSHeaders?
    public var payload: ByteBuffer
    /// The subscription id the server delivered it on (internal routing).
    var sid: UInt64

    public init(subject: String, replyTo: String? = nil, headers: NATSHeaders? = nil, payload: ByteBuffer) {
        self.init(subject: subject, sid: 0, replyTo: replyTo, headers: headers, payload: payload)
    }

    init(subject: String, sid: UInt64, replyTo: String?, headers: NATSHeaders?, payload: ByteBuffer) {
        self.subject = subject
        self.sid = sid
        self.replyTo = replyTo
        self.headers = headers
        self.payload = payload
    }

    /// The payload as UTF-8 text (invalid sequences are repaired).
    public var string: String { String(buffer: payload) }
    /// The payload as bytes (a copy).
    public var bytes: [UInt8] { Array(payload.readableBytesView) }
    /// The status on the header line (503, 404, 408, 100…), if any.
    public var status: Int? { headers?.status }
}
