import Atomics

/// Per-subscription counters, readable while messages flow.
final class SubscriptionCounters: Sendable {
    let delivered = ManagedAtomic(0)
    let dropped = ManagedAtomic(0)
}

/// A subscription's messages, as an `AsyncSequence` (`for await message in subscription`).
///
/// Iterate it from one task. The sequence ends when the subscription is unsubscribed (also after its
/// `unsubscribe(after:)` count) or the client closes; cancelling the iterating task unsubscribes, and so
/// does dropping the last reference to the subscription (nobody can read its messages any more).
/// Messages arriving while the buffer is full are dropped and counted (`droppedMessages`), so a slow
/// reader costs bounded memory and never holds up the connection.
public final class NATSSubscription: AsyncSequence, Sendable {
    public typealias Element = NATSMessage
    public typealias AsyncIterator = AsyncStream<NATSMessage>.AsyncIterator

    public let subject: String
    public let queue: String?
    let sid: UInt64
    private let client: NATSClient
    private let stream: AsyncStream<NATSMessage>
    private let counters: SubscriptionCounters

    init(
        client: NATSClient, sid: UInt64, subject: String, queue: String?, stream: AsyncStream<NATSMessage>,
        counters: SubscriptionCounters
    ) {
        self.client = client
        self.sid = sid
        self.subject = subject
        self.queue = queue
        self.stream = stream
        self.counters = counters
    }

    public func makeAsyncIterator() -> AsyncIterator { stream.makeAsyncIterator() }

    /// Messages the server delivered to this subscription (including dropped ones).
    public var deliveredMessages: Int { counters.delivered.load(ordering: .relaxed) }
    /// Messages dropped because the reader fell behind the buffer limit.
    public var droppedMessages: Int { counters.dropped.load(ordering: .relaxed) }

    /// Stops the subscription now; the sequence ends after the messages already buffered.
    public func unsubscribe() {
        client.unsubscribe(sid: sid, after: nil)
    }

    /// Stops the subscription once it has delivered `count` messages in total (also across reconnects).
    public func unsubscribe(after count: Int) {
        client.unsubscribe(sid: sid, after: Swift.max(0, count))
    }
}
