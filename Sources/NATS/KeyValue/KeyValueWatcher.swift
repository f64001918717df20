import Foundation
import NIOCore

/// A running KV watch: an `AsyncSequence` of entries, current values first (`delta` counts down to 0
/// when caught up; `initialPending` is 0 when there was nothing to catch up on), then live changes.
///
/// Behind it is an ephemeral push consumer with flow control; the watcher answers flow-control
/// requests itself. Call `stop()` when done (it also deletes the consumer).
public final class KeyValueWatcher: AsyncSequence, Sendable {
    public typealias Element = KeyValueEntry

    public let keyValue: KeyValue
    /// Matching values that existed when the watch started.
    public let initialPending: UInt64
    let subscription: NATSSubscription
    let consumer: String

    init(keyValue: KeyValue, subscription: NATSSubscription, consumer: String, initialPending: UInt64) {
        self.keyValue = keyValue
        self.subscription = subscription
        self.consumer = consumer
        self.initialPending = initialPending
    }

    /// Ends the watch and removes its consumer from the server (best effort, in the background).
    public func stop() {
        subscription.unsubscribe()
        let jetStream = keyValue.jetStream
        let stream = keyValue.streamName
        let consumer = self.consumer
        Task { try? await jetStream.deleteConsumer(stream: stream, name: consumer) }
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(base: subscription.makeAsyncIterator(), keyValue: keyValue)
    }

    public struct Iterator: AsyncIteratorProtocol {
        var base: NATSSubscription.AsyncIterator
        let keyValue: KeyValue

        public mutating func next() async throws -> KeyValueEntry? {
            let prefix = "$KV.\(keyValue.bucket)."
            while let message = await base.next() {
                if let status = message.status {
                    // 100: idle heartbeat or flow-control request; the latter has a reply subject to answer.
                    if status == 100, let reply = message.replyTo {
                        try? keyValue.jetStream.client.publish(ByteBuffer(), to: reply)
                    }
                    continue
                }
                guard message.subject.hasPrefix(prefix), let reply = message.replyTo,
                    let metadata = JetStreamMessage.Metadata(replySubject: reply)
                else { continue }
                return KeyValueEntry(
                    bucket: keyValue.bucket, key: String(message.subject.dropFirst(prefix.count)),
                    value: message.payload, revision: metadata.streamSequence, created: metadata.timestamp,
                    operation: KeyValue.operation(message.headers), delta: metadata.pending
                )
            }
            return nil
        }
    }
}
