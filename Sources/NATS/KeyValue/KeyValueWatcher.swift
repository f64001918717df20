import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A running KV watch: an `AsyncSequence` of entries, current values first (`delta` counts down to 0
/// when caught up; `initialPending` is 0 when there was nothing to catch up on), then live changes.
///
/// Behind it is an ephemeral push consumer with flow control; the watcher answers flow-control
/// requests itself. Call `stop()` when done (it also deletes the consumer).
///
/// The watch survives the client losing its server: the ephemeral consumer may be gone after a server
/// restart (or live on a server the client no longer reaches), so after every reconnect the watcher
/// deletes it (best effort) and creates a new one that starts after the last revision the reader was
/// given. Entries at or below that revision (from the old consumer, or still buffered) are skipped, so the
/// reader sees each revision once and misses none that the stream still holds. Shared cluster state
/// built from a watch therefore stays current across NATS outages.
public final class KeyValueWatcher: AsyncSequence, Sendable {
    public typealias Element = KeyValueEntry

    public let keyValue: KeyValue
    /// Matching values that existed when the watch started.
    public let initialPending: UInt64
    let subscription: NATSSubscription
    /// The consumer as first created; `recreate` derives the replacement from it.
    let configuration: ConsumerConfiguration
    let state: NIOLockedValueBox<State>
    private let recovery = NIOLockedValueBox<Task<Void, Never>?>(nil)

    struct State {
        var consumer: String
        /// The highest revision handed to the reader.
        var lastRevision: UInt64 = 0
        var stopped = false
        var recoveries = 0
    }

    init(
        keyValue: KeyValue, subscription: NATSSubscription, configuration: ConsumerConfiguration, consumer: String,
        initialPending: UInt64
    ) {
        self.keyValue = keyValue
        self.subscription = subscription
        self.configuration = configuration
        self.initialPending = initialPending
        self.state = NIOLockedValueBox(State(consumer: consumer))
        let changes = keyValue.jetStream.client.statusChanges()
        let task = Task { [weak self] in
            var lost = false
            for await status in changes {
                switch status {
                case .reconnecting:
                    lost = true
                case .connected where lost:
                    lost = false
                    await self?.recreate()
                case .closed:
                    return
                default:
                    break
                }
            }
        }
        recovery.withLockedValue { $0 = task }
    }

    /// A watcher dropped without `stop()` no longer follows the client's status.
    deinit {
        recovery.withLockedValue { $0?.cancel() }
    }

    /// Consumers recreated after reconnects (for operators and tests).
    public var recoveries: Int { state.withLockedValue { $0.recoveries } }

    /// The highest revision the reader has been given (0: none yet).
    public var lastRevision: UInt64 { state.withLockedValue { $0.lastRevision } }

    /// Ends the watch and removes its consumer from the server (best effort, in the background).
    public func stop() {
        let consumer: String? = state.withLockedValue { s in
            guard !s.stopped else { return nil }
            s.stopped = true
            return s.consumer
        }
        guard let consumer else { return }
        recovery.withLockedValue { $0?.cancel() }
        subscription.unsubscribe()
        let jetStream = keyValue.jetStream
        let stream = keyValue.streamName
        Task { try? await jetStream.deleteConsumer(stream: stream, name: consumer) }
    }

    /// Replaces the consumer after a reconnect: deletes the old one (it may be gone already) and creates
    /// one that delivers from the revision after the last one read. JetStream may need a moment after a
    /// server restart before it answers, so creation is retried with backoff until it works, the
    /// watcher is stopped or the client closes.
    func recreate() async {
        let jetStream = keyValue.jetStream
        let stream = keyValue.streamName
        let (old, last, stopped) = state.withLockedValue { ($0.consumer, $0.lastRevision, $0.stopped) }
        guard !stopped else { return }
        try? await jetStream.deleteConsumer(stream: stream, name: old)
        var config = configuration
        if last > 0 {
            config.deliverPolicy = .byStartSequence
            config.startSequence = last + 1
        }
        var delay = Duration.milliseconds(100)
        while !Task.isCancelled {
            if state.withLockedValue({ $0.stopped }) || jetStream.client.status == .closed { return }
            do {
                let info = try await jetStream.createConsumer(stream: stream, config)
                let keep: Bool = state.withLockedValue { s in
                    guard !s.stopped else { return false }
                    s.consumer = info.name
                    s.recoveries += 1
                    return true
                }
                if !keep { try? await jetStream.deleteConsumer(stream: stream, name: info.name) }
                jetStream.client.logger.info(
                    "nats kv watch resumed",
                    metadata: ["bucket": "\(keyValue.bucket)", "from_revision": "\(last + 1)"]
                )
                return
            } catch {
                jetStream.client.logger.debug(
                    "nats kv watch: recreating the consumer failed; retrying",
                    metadata: ["bucket": "\(keyValue.bucket)", "error": "\(error)"]
                )
                try? await Task.sleep(for: delay)
                delay = Swift.min(delay * 2, .seconds(2))
            }
        }
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(base: subscription.makeAsyncIterator(), keyValue: keyValue, state: state)
    }

    public struct Iterator: AsyncIteratorProtocol {
        var base: NATSSubscription.AsyncIterator
        let keyValue: KeyValue
        let state: NIOLockedValueBox<State>

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
                // Skip what a replaced consumer already delivered.
                let fresh: Bool = state.withLockedValue { s in
                    guard metadata.streamSequence > s.lastRevision else { return false }
                    s.lastRevision = metadata.streamSequence
                    return true
                }
                guard fresh else { continue }
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
