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

        /// Parses both the 2.x form (9 tokens) and the domain form (12 tokens). Works on the UTF-8
        /// bytes (every delivered message has one of these): no token array, two Strings.
        init?(replySubject: String) {
            var subject = replySubject
            guard let parsed = subject.withUTF8({ Self.parse($0) }) else { return nil }
            self = parsed
        }

        init(
            stream: String, consumer: String, deliveryCount: Int, streamSequence: UInt64, consumerSequence: UInt64,
            timestamp: Date, pending: UInt64
        ) {
            self.stream = stream
            self.consumer = consumer
            self.deliveryCount = deliveryCount
            self.streamSequence = streamSequence
            self.consumerSequence = consumerSequence
            self.timestamp = timestamp
            self.pending = pending
        }

        private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Metadata? {
            // The dots' positions, -1 first: token k is bounds[k] + 1 ..< bounds[k + 1].
            withUnsafeTemporaryAllocation(of: Int.self, capacity: 13) { bounds -> Metadata? in
                bounds[0] = -1
                var dots = 0
                for i in bytes.indices where bytes[i] == UInt8(ascii: ".") {
                    dots += 1
                    bounds[dots] = i
                    if dots == 12 { break }  // tokens 0…11 are bounded; later ones are never read
                }
                let count = dots == 12 ? 12 : dots + 1
                if dots < 12 { bounds[dots + 1] = bytes.count }
                guard count >= 9 else { return nil }
                func token(_ k: Int) -> Slice<UnsafeBufferPointer<UInt8>> { bytes[(bounds[k] + 1)..<bounds[k + 1]] }
                guard token(0).elementsEqual("$JS".utf8), token(1).elementsEqual("ACK".utf8) else { return nil }
                let base = count == 9 ? 2 : 4
                guard base + 7 <= count, let delivered = Int(decimal: token(base + 2)),
                    let sseq = UInt64(decimal: token(base + 3)), let cseq = UInt64(decimal: token(base + 4)),
                    let nanos = Int64(decimal: token(base + 5)), let pending = UInt64(decimal: token(base + 6))
                else { return nil }
                return Metadata(
                    stream: String(decoding: token(base), as: UTF8.self),
                    consumer: String(decoding: token(base + 1), as: UTF8.self), deliveryCount: delivered,
                    streamSequence: sseq, consumerSequence: cseq, timestamp: Date(timeIntervalSince1970: Double(nanos) / 1e9),
                    pending: pending)
            }
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
