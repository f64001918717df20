import Foundation
import NIOCore

/// A message delivered by a JetStream consumer, with its delivery metadata and the acknowledgements
/// that steer redelivery.
///
/// Acks are plain publishes to the message's reply subject (`$JS.ACK.…`); they do not wait. Use
/// `ackSync()` when the caller must know the server recorded the ack (e.g. before confirming upstream).
public struct JetStreamMessage: Sendable {
    public let message: NATSMessage
    public let metadata: Metadata
    let client: NATSClient

    /// What the `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>`
    /// reply subject says.
    public struct Metadata: Sendable, Equatable {
        public var stream: String
        public var consumer: String
        /// 1 on first delivery; more when redelivered.
        public var deliveryCount: Int
        public var streamSequence: UInt64
        public var consumerSequence: UInt64
        public var timestamp: Date
        /// Messages left for the consumer after this one.
        public var pending: UInt64

        /// Parses both the 2.x form (9 tokens) and the domain form (12 tokens).
        init?(replySubject: String) {
            let tokens = replySubject.split(separator: ".", omittingEmptySubsequences: false)
            guard tokens.count >= 9, tokens[0] == "$JS", tokens[1] == "ACK" else { return nil }
            let t = tokens.count == 9 ? Array(tokens[2...]) : Array(tokens[4...])
            guard t.count >= 7, let delivered = Int(t[2]), let sseq = UInt64(t[3]), let cseq = UInt64(t[4]),
                let nanos = Int64(t[5]), let pending = UInt64(t[6])
            else { return nil }
            stream = String(t[0])
            consumer = String(t[1])
            deliveryCount = delivered
            streamSequence = sseq
            consumerSequence = cseq
            timestamp = Date(timeIntervalSince1970: Double(nanos) / 1e9)
            self.pending = pending
        }
    }

    init?(message: NATSMessage, client: NATSClient) {
        guard let reply = message.replyTo, let metadata = Metadata(replySubject: reply) else { return nil }
        self.message = message
        self.metadata = metadata
        self.client = client
    }

    public var subject: String { message.subject }
    public var payload: ByteBuffer { message.payload }
    public var headers: NATSHeaders? { message.headers }
    public var string: String { message.string }

    /// Done with it: it will not be delivered again.
    public func ack() throws { try reply("+ACK") }

    /// Done with it, and wait until the server has recorded the ack.
    public func ackSync(timeout: Duration = .seconds(5)) async throws {
        guard let replyTo = message.replyTo else { throw NATSError.invalidSubject("(no reply subject)") }
        _ = try await client.request("+ACK", to: replyTo, timeout: timeout)
    }

    /// Not processed: deliver it again, at once or after `delay`.
    public func nak(delay: Duration? = nil) throws {
        if let delay {
            try reply("-NAK {\"delay\":\(delay.nanoseconds)}")
        } else {
            try reply("-NAK")
        }
    }

    /// Never deliver it again (poison message), without counting as processed.
    public func term() throws { try reply("+TERM") }

    /// Still working on it: restart the ack wait timer.
    public func inProgress() throws { try reply("+WPI") }

    private func reply(_ text: String) throws {
        guard let replyTo = message.replyTo else { throw NATSError.invalidSubject("(no reply subject)") }
        try client.publish(text, to: replyTo)
    }
}
