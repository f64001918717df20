import Foundation
import NIOCore

/// A durable pull consumer: the application asks for a batch when it is ready for one, so a slow
/// backend is never flooded and several workers can share one consumer.
public struct PullConsumer: Sendable {
    public let jetStream: JetStream
    public let stream: String
    public let name: String

    /// Asks for up to `batch` messages and returns when that many arrived or `expires` passed (with
    /// whatever arrived, possibly none). With `noWait`, returns at once with what is available.
    ///
    /// Each fetch uses a fresh inbox subscription, so late messages of an expired fetch can never be
    /// mistaken for answers to the next one; messages delivered but not returned (the caller gave up)
    /// come back after the consumer's ack wait.
    public func fetch(batch: Int, expires: Duration = .seconds(5), noWait: Bool = false) async throws
        -> [JetStreamMessage]
    {
        guard batch > 0 else { return [] }
        let client = jetStream.client
        let inbox = client.newInbox()
        let subscription = try client.subscribeNoFlush(to: inbox, bufferLimit: batch + 16)
        defer { subscription.unsubscribe() }
        struct Next: Encodable {
            var batch: Int
            var expires: Int64?
            var noWait: Bool?
            enum CodingKeys: String, CodingKey {
                case batch, expires
                case noWait = "no_wait"
            }
        }
        let request = Next(batch: batch, expires: noWait ? nil : expires.nanoseconds, noWait: noWait ? true : nil)
        try client.publish(
            ByteBuffer(bytes: try JetStreamJSON.encoder.encode(request)),
            to: "\(jetStream.apiPrefix).CONSUMER.MSG.NEXT.\(try JetStream.name(stream)).\(try JetStream.name(name))",
            replyTo: inbox
        )
        // The server answers 408 when `expires` passes; the local deadline only guards a lost answer.
        let deadline = Task {
            try? await Task.sleep(for: (noWait ? jetStream.timeout : expires) + .seconds(1))
            subscription.unsubscribe()
        }
        defer { deadline.cancel() }
        var messages: [JetStreamMessage] = []
        for await message in subscription {
            if let status = message.status {
                switch status {
                case 100:
                    continue  // idle heartbeat
                case 404, 408:
                    return messages  // no messages / request expired
                case 409:
                    // Consumer deleted, or limits such as max waiting exceeded.
                    if messages.isEmpty {
                        throw NATSError.jetStream(JetStreamAPIError(
                            code: 409, errorCode: 0, errorDescription: message.headers?.statusDescription ?? ""
                        ))
                    }
                    return messages
                default:
                    if status >= 400 && messages.isEmpty {
                        throw NATSError.jetStream(JetStreamAPIError(
                            code: status, errorCode: 0, errorDescription: message.headers?.statusDescription ?? ""
                        ))
                    }
                    continue
                }
            }
            guard let jsMessage = JetStreamMessage(message: message, client: client) else { continue }
            messages.append(jsMessage)
            if messages.count == batch { return messages }
        }
        return messages
    }

    /// The consumer's configuration and progress.
    public func info() async throws -> ConsumerInfo {
        try await jetStream.consumerInfo(stream: stream, name: name)
    }
}
