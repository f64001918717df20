import Atomics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// Where the client is in its life.
public enum NATSConnectionStatus: Sendable, Equatable {
    case connecting
    case connected
    /// Lost the server; publishes are buffered (within `reconnectBufferBytes`) until it is back.
    case reconnecting
    case closed
}

/// Counters since the client was created.
public struct NATSClientStatistics: Sendable, Equatable {
    public var inMessages: Int
    public var inBytes: Int
    public var outMessages: Int
    public var outBytes: Int
    /// Successful reconnects (not counting the first connect).
    public var reconnects: Int
    /// Publishes refused because the reconnect buffer was full.
    public var droppedPublishes: Int
    /// Messages subscriptions dropped because their reader fell behind, summed over all subscriptions.
    public var droppedMessages: Int
    /// `-ERR`s received after the handshake (slow consumer, stale connection…).
    public var serverErrors: Int
}

/// A NATS client: publish, subscribe, request-reply, flush, with reconnect and resubscribe.
///
/// One TCP (or TLS) connection carries everything. While it is down the client reconnects with jittered
/// backoff, keeps publishes in a bounded buffer, and on reconnect re-sends every subscription before the
/// buffered publishes, so a subscriber sees its own traffic after a server restart. `publish` never
/// suspends: it writes to the connection (or the buffer) and returns, which keeps the gateway's per-frame
/// path free of task hops. Requests share one wildcard inbox subscription (`_INBOX.<random>.*`) instead
/// of a subscription per request.
public final class NATSClient: Sendable {
    public let options: NATSClientOptions
    let group: any EventLoopGroup
    let logger: Logger
    /// `<inboxPrefix>.<random>`: requests reply to `<muxInbox>.<token>`.
    let muxInbox: String
    private let tlsContext: NIOSSLContext?
    private let state: NIOLockedValueBox<State>
    /// Held while status changes are told to watchers (outside `state`'s lock, in order).
    private let notifying = NIOLock()
    private let counters = Counters()
    /// The event loop every connection of this client runs on (and the request deadline sweep,
    /// `sweepRequests`): fixed for the client's life, so callers can do their NATS work on it and
    /// skip a hop between threads per publish.
    public let eventLoop: any EventLoop
    private var sweepLoop: any EventLoop { eventLoop }

    static let inboxSID: UInt64 = 1

    struct State {
        var status = NATSConnectionStatus.connecting
        var channel: (any Channel)?
        var serverInfo: ServerInfo?
        var nextSID: UInt64 = 2
        var subscriptions: [UInt64: SubscriptionRecord] = [:]
        /// Protocol bytes written while disconnected, sent after the subscriptions on reconnect.
        var pending = ByteBuffer()
        /// Protocol bytes for the connection, not yet handed to it: one write per event-loop turn
        /// carries everything callers sent meanwhile (`send`), instead of a task hop and a write
        /// syscall per message.
        var outbound = ByteBuffer()
        /// A turn of the connection's event loop will hand `outbound` to the connection.
        var outboundScheduled = false
        var requests: [Substring: RequestWaiter] = [:]
        /// Request deadlines by timeout (nanoseconds), each in the order the requests were made, so
        /// their deadlines ascend: the sweep looks only at the heads. Answered requests stay here
        /// until their deadline passes and are skipped then.
        var requestDeadlines: [Int64: CircularBuffer<(deadline: NIODeadline, key: Substring)>] = [:]
        /// When the next sweep of `requestDeadlines` is scheduled: never later than the earliest
        /// deadline (a request with an earlier one schedules another sweep).
        var sweepAt: NIODeadline?
        var nextRequest: UInt64 = 0
        var reconnectTask: Task<Void, Never>?
        var lastError: String?
        var statusWatchers: [UInt64: AsyncStream<NATSConnectionStatus>.Continuation] = [:]
        var nextWatcher: UInt64 = 0
        /// Status changes not yet told to the watchers that were registered when they happened.
        var statusNotices: [(NATSConnectionStatus, [AsyncStream<NATSConnectionStatus>.Continuation])] = []
        /// The server of the current (or last) connection.
        var currentServer: NATSServerAddress?
        /// Servers learnt from INFO's `connect_urls` that the options do not list (cluster members).
        var discovered: [NATSServerAddress] = []
    }

    /// At most this many discovered servers are kept (a misbehaving server cannot grow the pool without end).
    static let maximumDiscoveredServers = 64

    struct SubscriptionRecord {
        var subject: String
        var queue: String?
        /// Total messages after which the subscription ends (client-side count), if any.
        var max: Int?
        var delivered = 0
        /// Delivered on the current connection: what the server counts for `UNSUB sid max`.
        var deliveredOnConnection = 0
        var sink: Sink

        enum Sink {
            case inbox
            /// `stream` carries the messages, or (with a handler) only the end of the subscription.
            case stream(AsyncStream<NATSMessage>.Continuation, SubscriptionCounters, handler: (@Sendable (NATSMessage) -> Void)?)
        }
    }

    struct RequestWaiter {
        var subject: String
        var continuation: CheckedContinuation<NATSMessage, any Error>
    }

    final class Counters: Sendable {
        let inMessages = ManagedAtomic(0)
        let inBytes = ManagedAtomic(0)
        let outMessages = ManagedAtomic(0)
        let outBytes = ManagedAtomic(0)
        let reconnects = ManagedAtomic(0)
        let droppedPublishes = ManagedAtomic(0)
        let droppedMessages = ManagedAtomic(0)
        let serverErrors = ManagedAtomic(0)
    }

    private init(options: NATSClientOptions, group: any EventLoopGroup, logger: Logger) throws {
        guard !options.servers.isEmpty else { throw NATSError.invalidURL("no servers") }
        try ClientProtocol.validate(subject: options.inboxPrefix)
        self.options = options
        self.group = group
        self.eventLoop = group.next()
        self.logger = logger
        self.muxInbox = "\(options.inboxPrefix).\(Self.randomToken())"
        if options.tls != nil || options.servers.contains(where: \.tls) {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if let tls = options.tls {
                if let caFile = tls.caFile { configuration.trustRoots = .file(caFile) }
                if let certificateFile = tls.certificateFile {
                    configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map {
                        .certificate($0)
                    }
                }
                if let keyFile = tls.privateKeyFile {
                    configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
                }
            }
            self.tlsContext = try NIOSSLContext(configuration: configuration)
        } else {
            self.tlsContext = nil
        }
        var initial = State()
        initial.subscriptions[Self.inboxSID] = SubscriptionRecord(subject: "\(muxInbox).*", sink: .inbox)
        self.state = NIOLockedValueBox(initial)
    }

    /// Connects to the first server that answers (trying each once, in order) and returns a connected
    /// client; throws the last failure (`authorizationViolation`, `tlsMismatch`, `connectionFailed`…).
    public static func connect(
        _ options: NATSClientOptions,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "nats")
    ) async throws -> NATSClient {
        let client = try NATSClient(options: options, group: eventLoopGroup, logger: logger)
        var lastError: any Error = NATSError.connectionFailed("no servers")
        for server in options.servers {
            do {
                try await client.establish(server)
                return client
            } catch {
                lastError = error
                client.logger.debug("nats connect failed", metadata: ["server": "\(server)", "error": "\(error)"])
            }
        }
        client.state.withLockedValue { $0.status = .closed }
        if let error = lastError as? NATSError {
            switch error {
            case .authorizationViolation, .tlsMismatch, .serverError: throw error
            default: break
            }
        }
        throw NATSError.connectionFailed("\(lastError)")
    }

    /// Convenience: `connect(try NATSClientOptions(url:))`.
    public static func connect(url: String) async throws -> NATSClient {
        try await connect(try NATSClientOptions(url: url))
    }

    // MARK: - State

    public var status: NATSConnectionStatus { state.withLockedValue { $0.status } }

    /// The INFO of the server the client is (or was last) connected to.
    public var serverInfo: ServerInfo? { state.withLockedValue { $0.serverInfo } }

    /// The servers reconnects go through: the configured ones, then those the cluster announced in INFO's
    /// `connect_urls` (with the scheme and URL credentials of the server that announced them).
    public var knownServers: [NATSServerAddress] { state.withLockedValue { Self.pool(options.servers, $0) } }

    static func pool(_ configured: [NATSServerAddress], _ s: State) -> [NATSServerAddress] {
        configured + s.discovered.filter { !configured.contains($0) }
    }

    /// Adds INFO's `connect_urls` to the discovered servers (called with the lock held). A server restart
    /// or a cluster change sends a new list; servers that left stay in the pool (a failed attempt just
    /// moves on to the next), bounded by `maximumDiscoveredServers`.
    static func learn(_ info: ServerInfo, from server: NATSServerAddress, in s: inout State) {
        for url in info.connectURLs {
            guard var address = try? NATSServerAddress(url) else { continue }
            if !url.contains("://") { address.tls = server.tls }
            if address.userInfo == nil { address.userInfo = server.userInfo }
            guard address != server, !s.discovered.contains(address),
                s.discovered.count < maximumDiscoveredServers
            else { continue }
            s.discovered.append(address)
        }
    }

    /// The last asynchronous error (server `-ERR`, failed reconnect attempt), for operators.
    public var lastError: String? { state.withLockedValue { $0.lastError } }

    public var statistics: NATSClientStatistics {
        NATSClientStatistics(
            inMessages: counters.inMessages.load(ordering: .relaxed),
            inBytes: counters.inBytes.load(ordering: .relaxed),
            outMessages: counters.outMessages.load(ordering: .relaxed),
            outBytes: counters.outBytes.load(ordering: .relaxed),
            reconnects: counters.reconnects.load(ordering: .relaxed),
            droppedPublishes: counters.droppedPublishes.load(ordering: .relaxed),
            droppedMessages: counters.droppedMessages.load(ordering: .relaxed),
            serverErrors: counters.serverErrors.load(ordering: .relaxed)
        )
    }

    /// Status changes from now on (the current status first), so a node can show and react to NATS
    /// trouble without polling. The sequence ends when the client is closed.
    public func statusChanges() -> AsyncStream<NATSConnectionStatus> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: NATSConnectionStatus.self, bufferingPolicy: .bufferingNewest(16)
        )
        let closed: Bool = state.withLockedValue { s in
            continuation.yield(s.status)
            guard s.status != .closed else { return true }
            let id = s.nextWatcher
            s.nextWatcher += 1
            s.statusWatchers[id] = continuation
            continuation.onTermination = { [weak self] _ in
                self?.state.withLockedValue { _ = $0.statusWatchers.removeValue(forKey: id) }
            }
            return false
        }
        if closed { continuation.finish() }
        return stream
    }

    /// Sets the status and queues the change for the watchers (called with the lock held);
    /// `tellStatusWatchers()` delivers it once the lock is released.
    private static func setStatus(_ status: NATSConnectionStatus, in s: inout State) {
        guard s.status != status else { return }
        s.status = status
        if !s.statusWatchers.isEmpty { s.statusNotices.append((status, Array(s.statusWatchers.values))) }
    }

    /// Delivers queued status changes, in order. Never called with `state`'s lock held: yielding
    /// resumes a waiting task, which takes that task's status lock, while cancelling a task runs
    /// the stream's `onTermination` under its status lock, which takes `state`'s lock; yielding
    /// under `state`'s lock deadlocked the two threads (seen when a cluster node's watcher was
    /// stopped during a reconnect).
    private func tellStatusWatchers() {
        notifying.withLock {
            let notices = state.withLockedValue { s in
                defer { s.statusNotices = [] }
                return s.statusNotices
            }
            for (status, watchers) in notices {
                for watcher in watchers { watcher.yield(status) }
            }
        }
    }

    // MARK: - Publish

    /// Publishes `payload` to `subject`. Does not wait for the server: use `flush()` for a barrier or
    /// JetStream for an acknowledgement. While reconnecting the message is buffered; when the buffer is
    /// full this throws `reconnectBufferExceeded` and the message is not sent.
    public func publish(
        _ payload: ByteBuffer, to subject: String, replyTo: String? = nil, headers: NATSHeaders? = nil
    ) throws {
        try ClientProtocol.validate(subject: subject)
        if let replyTo { try ClientProtocol.validate(subject: replyTo) }
        if let headers { try headers.validate() }
        var buffer = ByteBufferAllocator().buffer(capacity: subject.utf8.count + payload.readableBytes + 64)
        let size = ClientProtocol.writePublish(
            subject: subject, replyTo: replyTo, headers: headers, payload: payload, into: &buffer
        )
        try send(buffer, bodySize: size)
        counters.outMessages.wrappingIncrement(ordering: .relaxed)
        counters.outBytes.wrappingIncrement(by: size, ordering: .relaxed)
    }

    /// Publishes UTF-8 text.
    public func publish(_ text: String, to subject: String, replyTo: String? = nil, headers: NATSHeaders? = nil)
        throws
    {
        try publish(ByteBuffer(string: text), to: subject, replyTo: replyTo, headers: headers)
    }

    /// Publishes bytes.
    public func publish(_ bytes: [UInt8], to subject: String, replyTo: String? = nil, headers: NATSHeaders? = nil)
        throws
    {
        try publish(ByteBuffer(bytes: bytes), to: subject, replyTo: replyTo, headers: headers)
    }

    /// Writes protocol bytes to the connection, or to the reconnect buffer while disconnected. The write
    /// happens under the lock so bytes leave in the order callers handed them over, also across a
    /// reconnect (the buffer is flushed under the same lock).
    /// A publish's `bodySize` is checked against the server's `max_payload` under the same lock.
    private func send(_ buffer: ByteBuffer, bodySize: Int) throws {
        try state.withLockedValue { s in
            let maxPayload = s.serverInfo?.maxPayload ?? 1_048_576
            guard bodySize <= maxPayload else {
                throw NATSError.payloadTooLarge(size: bodySize, maxPayload: maxPayload)
            }
            switch s.status {
            case .connected:
                Self.enqueue(buffer, in: &s, client: self)
            case .closed:
                throw NATSError.connectionClosed
            case .connecting, .reconnecting:
                guard s.pending.readableBytes + buffer.readableBytes <= options.reconnectBufferBytes else {
                    counters.droppedPublishes.wrappingIncrement(ordering: .relaxed)
                    throw NATSError.reconnectBufferExceeded(budget: options.reconnectBufferBytes)
                }
                var bytes = buffer
                s.pending.writeBuffer(&bytes)
            }
        }
    }

    /// Appends protocol bytes for the current connection; the first append after a write schedules
    /// the next one on the connection's event loop. Bytes leave in the order they were appended.
    private static func enqueue(_ buffer: ByteBuffer, in s: inout State, client: NATSClient) {
        guard let channel = s.channel else { return }
        var bytes = buffer
        s.outbound.writeBuffer(&bytes)
        guard !s.outboundScheduled else { return }
        s.outboundScheduled = true
        channel.eventLoop.execute { client.writeOutbound(to: channel) }
    }

    /// Hands what was appended to the connection, in one write. On `channel`'s event loop.
    private func writeOutbound(to channel: any Channel) {
        let bytes: ByteBuffer? = state.withLockedValue { s in
            // A lost connection's bytes were moved to `pending`, and its flag cleared
            // (`connectionLost`); the flag belongs to the current connection then.
            guard s.channel === channel else { return nil }
            s.outboundScheduled = false
            guard s.outbound.readableBytes > 0 else { return nil }
            defer { s.outbound = ByteBuffer() }
            return s.outbound
        }
        if let bytes { channel.writeAndFlush(bytes, promise: nil) }
    }

    /// Waits until the server has processed everything written before (a PING/PONG round trip).
    /// Throws `connectionClosed` when not connected and `timeout` when the PONG is late.
    public func flush(timeout: Duration = .seconds(5)) async throws {
        guard let channel = state.withLockedValue({ $0.status == .connected ? $0.channel : nil }) else {
            throw NATSError.connectionClosed
        }
        try await roundTrip(channel: channel, timeout: timeout)
    }

    /// A PING after everything appended so far (`outbound` is written first), and its PONG.
    func roundTrip(channel: any Channel, timeout: Duration) async throws {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        let once = OneShot<Void>()
        promise.futureResult.whenComplete { once.resume($0) }
        let timer = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) { once.resume(.failure(NATSError.timeout)) }
        channel.eventLoop.execute {
            self.writeOutbound(to: channel)
            channel.triggerUserOutboundEvent(PingRequest(promise: promise), promise: nil)
        }
        defer { timer.cancel() }
        try await once.wait()
    }

    // MARK: - Subscribe

    /// Subscribes to `subject` (wildcards `*` and `>` allowed); with `queue`, subscribers of the same
    /// group share the messages, one receiving each. Returns after the server has the subscription
    /// (a flush), so messages published afterwards are delivered; while reconnecting it returns at once
    /// and the subscription is sent on reconnect.
    ///
    /// The subscription buffers up to `bufferLimit` (default `subscriptionBufferLimit`) messages for its
    /// reader; beyond that new messages are dropped and counted in `droppedMessages` rather than letting
    /// a slow reader grow memory without bound or stall every other subscription.
    public func subscribe(to subject: String, queue: String? = nil, bufferLimit: Int? = nil) async throws
        -> NATSSubscription
    {
        let subscription = try subscribeNoFlush(to: subject, queue: queue, bufferLimit: bufferLimit)
        if status == .connected { try? await flush() }
        return subscription
    }

    /// Subscribes with `handler` called for each message on the connection's event loop, in the
    /// order the server sent them: no task switch per message, for subscriptions that carry a
    /// stream of small messages to code that only takes locks and schedules work. The handler
    /// must not block or wait. The returned subscription yields no messages; its sequence ends
    /// when the subscription does (unsubscribed, cancelled, client closed).
    public func subscribe(
        to subject: String, queue: String? = nil, handler: @escaping @Sendable (NATSMessage) -> Void
    ) async throws -> NATSSubscription {
        let subscription = try subscribeNoFlush(to: subject, queue: queue, bufferLimit: 1, handler: handler)
        if status == .connected { try? await flush() }
        return subscription
    }

    /// `subscribe` without the flush: for callers that flush once after several subscriptions.
    public func subscribeNoFlush(to subject: String, queue: String? = nil, bufferLimit: Int? = nil) throws
        -> NATSSubscription
    {
        try subscribeNoFlush(to: subject, queue: queue, bufferLimit: bufferLimit, handler: nil)
    }

    private func subscribeNoFlush(
        to subject: String, queue: String?, bufferLimit: Int?, handler: (@Sendable (NATSMessage) -> Void)?
    ) throws -> NATSSubscription {
        try ClientProtocol.validate(subject: subject)
        if let queue { try ClientProtocol.validate(subject: queue) }
        let limit = max(1, bufferLimit ?? options.subscriptionBufferLimit)
        let (stream, continuation) = AsyncStream.makeStream(
            of: NATSMessage.self, bufferingPolicy: .bufferingOldest(limit)
        )
        let counters = SubscriptionCounters()
        let sid: UInt64 = try state.withLockedValue { s in
            guard s.status != .closed else { throw NATSError.connectionClosed }
            let sid = s.nextSID
            s.nextSID += 1
            s.subscriptions[sid] = SubscriptionRecord(
                subject: subject, queue: queue, sink: .stream(continuation, counters, handler: handler)
            )
            if s.status == .connected {
                var buffer = ByteBuffer()
                ClientProtocol.writeSubscribe(sid: sid, subject: subject, queue: queue, into: &buffer)
                Self.enqueue(buffer, in: &s, client: self)
            }
            return sid
        }
        continuation.onTermination = { [weak self] termination in
            if case .cancelled = termination { self?.unsubscribe(sid: sid, after: nil) }
        }
        return NATSSubscription(
            client: self, sid: sid, subject: subject, queue: queue, stream: stream, counters: counters
        )
    }

    /// Ends a subscription now (`after` nil) or after it has delivered `after` messages in total.
    func unsubscribe(sid: UInt64, after max: Int?) {
        let finished: AsyncStream<NATSMessage>.Continuation? = state.withLockedValue { s in
            guard var record = s.subscriptions[sid] else { return nil }
            var finished: AsyncStream<NATSMessage>.Continuation?
            var serverMax: Int?
            if let max, record.delivered < max {
                record.max = max
                serverMax = record.deliveredOnConnection + (max - record.delivered)
                s.subscriptions[sid] = record
            } else {
                s.subscriptions[sid] = nil
                if case .stream(let continuation, _, _) = record.sink { finished = continuation }
            }
            if s.status == .connected {
                var buffer = ByteBuffer()
                ClientProtocol.writeUnsubscribe(sid: sid, max: serverMax, into: &buffer)
                Self.enqueue(buffer, in: &s, client: self)
            }
            return finished
        }
        finished?.finish()
    }

    // MARK: - Request-reply

    /// Sends a request and waits for the first reply. Throws `noResponders` at once when nobody
    /// subscribes to `subject` (the server answers with status 503), `timeout` after `timeout`.
    public func request(
        _ payload: ByteBuffer, to subject: String, headers: NATSHeaders? = nil, timeout: Duration? = nil
    ) async throws -> NATSMessage {
        let token: String = try state.withLockedValue { s in
            guard s.status != .closed else { throw NATSError.connectionClosed }
            s.nextRequest += 1
            return String(s.nextRequest, radix: 36)
        }
        let key = Substring(token)
        let replyTo = "\(muxInbox).\(token)"
        let wait = TimeAmount(timeout ?? options.requestTimeout)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<NATSMessage, any Error>) in
                let deadline = NIODeadline.now() + wait
                let (registered, armSweep) = state.withLockedValue { s -> (Bool, Bool) in
                    guard s.status != .closed else { return (false, false) }
                    s.requests[key] = RequestWaiter(subject: subject, continuation: continuation)
                    s.requestDeadlines[wait.nanoseconds, default: CircularBuffer()].append((deadline, key))
                    if let at = s.sweepAt, at <= deadline { return (true, false) }
                    s.sweepAt = deadline
                    return (true, true)
                }
                guard registered else {
                    continuation.resume(throwing: NATSError.connectionClosed)
                    return
                }
                if armSweep { sweepLoop.scheduleTask(deadline: deadline) { [weak self] in self?.sweepRequests() } }
                do {
                    try publish(payload, to: subject, replyTo: replyTo, headers: headers)
                } catch {
                    resolveRequest(key, with: .failure(error))
                }
            }
        } onCancel: {
            resolveRequest(key, with: .failure(CancellationError()))
        }
    }

    /// `request` with a text payload.
    public func request(_ text: String, to subject: String, headers: NATSHeaders? = nil, timeout: Duration? = nil)
        async throws -> NATSMessage
    {
        try await request(ByteBuffer(string: text), to: subject, headers: headers, timeout: timeout)
    }

    /// Answers a request: publishes to its `replyTo`. Throws `invalidSubject` when it has none.
    public func respond(to request: NATSMessage, with payload: ByteBuffer, headers: NATSHeaders? = nil) throws {
        guard let replyTo = request.replyTo else { throw NATSError.invalidSubject("(request without reply)") }
        try publish(payload, to: replyTo, headers: headers)
    }

    /// Fails the requests whose deadline has passed, and schedules the next sweep at the earliest
    /// deadline left. One timer for all requests: NIO cancels a scheduled task by searching its
    /// heap, which at thousands of requests in flight (a PubAck per bill) costs more than the
    /// requests themselves.
    private func sweepRequests() {
        let now = NIODeadline.now()
        let (expired, next): ([RequestWaiter], NIODeadline?) = state.withLockedValue { s in
            var expired: [RequestWaiter] = []
            var next: NIODeadline?
            for timeout in Array(s.requestDeadlines.keys) {
                guard var queue = s.requestDeadlines.removeValue(forKey: timeout) else { continue }
                while let head = queue.first {
                    if s.requests[head.key] == nil {
                        queue.removeFirst()  // answered already
                    } else if head.deadline <= now {
                        queue.removeFirst()
                        if let waiter = s.requests.removeValue(forKey: head.key) { expired.append(waiter) }
                    } else {
                        next = min(next ?? head.deadline, head.deadline)
                        break
                    }
                }
                if !queue.isEmpty { s.requestDeadlines[timeout] = queue }
            }
            // A sweep scheduled for later than now (a request's earlier deadline scheduled this
            // one) stays; otherwise this was the scheduled one, and the next goes at `next`.
            if let at = s.sweepAt, at > now { return (expired, nil) }
            s.sweepAt = next
            return (expired, next)
        }
        for waiter in expired { waiter.continuation.resume(throwing: NATSError.timeout) }
        if let next { sweepLoop.scheduleTask(deadline: next) { [weak self] in self?.sweepRequests() } }
    }

    private func resolveRequest(_ key: Substring, with result: Result<NATSMessage, any Error>) {
        guard let waiter = state.withLockedValue({ $0.requests.removeValue(forKey: key) }) else { return }
        switch result {
        case .success(let message) where message.status == 503 && message.payload.readableBytes == 0:
            waiter.continuation.resume(throwing: NATSError.noResponders(subject: waiter.subject))
        default:
            waiter.continuation.resume(with: result)
        }
    }

    /// A fresh subject for a one-off reply subscription (`<inboxPrefix>.<random>`).
    public func newInbox() -> String {
        "\(options.inboxPrefix).\(Self.randomToken())"
    }

    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
        return String(decoding: (0..<22).map { _ in alphabet[Int(generator.next() % 62)] }, as: UTF8.self)
    }

    // MARK: - Close

    /// Flushes what was published (within a second), closes the connection, ends every subscription and
    /// fails pending requests with `connectionClosed`. Further calls do nothing.
    public func close() async {
        let taken = state.withLockedValue { s -> (Channel?, ByteBuffer, Task<Void, Never>?, [SubscriptionRecord], [RequestWaiter], [AsyncStream<NATSConnectionStatus>.Continuation])? in
            guard s.status != .closed else { return nil }
            Self.setStatus(.closed, in: &s)
            defer {
                s.channel = nil
                s.reconnectTask = nil
                s.subscriptions = [:]
                s.requests = [:]
                s.requestDeadlines = [:]
                s.statusWatchers = [:]
                s.pending.clear()
                s.outbound = ByteBuffer()
            }
            return (
                s.channel, s.outbound, s.reconnectTask, Array(s.subscriptions.values), Array(s.requests.values),
                Array(s.statusWatchers.values)
            )
        }
        tellStatusWatchers()
        guard let (channel, unwritten, task, subscriptions, requests, watchers) = taken else { return }
        task?.cancel()
        if let channel {
            // What was published before the close goes out before the final PING.
            if unwritten.readableBytes > 0 { channel.writeAndFlush(unwritten, promise: nil) }
            try? await roundTrip(channel: channel, timeout: .seconds(1))
            try? await channel.close()
        }
        for record in subscriptions {
            if case .stream(let continuation, _, _) = record.sink { continuation.finish() }
        }
        for waiter in requests {
            waiter.continuation.resume(throwing: NATSError.connectionClosed)
        }
        for watcher in watchers { watcher.finish() }
    }

    // MARK: - Connection

    /// Opens a connection to `server`, completes the handshake, re-sends every subscription and the
    /// buffered publishes, and makes it the client's connection.
    private func establish(_ server: NATSServerAddress) async throws {
        let handshake = eventLoop.makePromise(of: ServerInfo.self)
        let options = self.options
        let tlsContext = self.tlsContext
        let logger = self.logger
        let bootstrap = ClientBootstrap(group: handshake.futureResult.eventLoop)
            .connectTimeout(TimeAmount(options.connectTimeout))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = NATSConnectionHandler(
                        options: options, server: server, tlsContext: tlsContext, handshake: handshake,
                        delegate: self, logger: logger
                    )
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ServerOperationDecoder()))
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: server.host, port: server.port).get()
        } catch {
            handshake.fail(error)
            throw error
        }
        let timer = channel.eventLoop.scheduleTask(in: TimeAmount(options.connectTimeout)) {
            channel.triggerUserOutboundEvent(HandshakeTimedOut(), promise: nil)
        }
        let info: ServerInfo
        do {
            info = try await handshake.futureResult.get()
            timer.cancel()
        } catch {
            timer.cancel()
            try? await channel.close()
            throw error
        }
        let installed: Bool = state.withLockedValue { s in
            guard s.status != .closed else { return false }
            var buffer = channel.allocator.buffer(capacity: 256 + s.pending.readableBytes)
            for (sid, record) in s.subscriptions.sorted(by: { $0.key < $1.key }) {
                ClientProtocol.writeSubscribe(sid: sid, subject: record.subject, queue: record.queue, into: &buffer)
                if let max = record.max {
                    ClientProtocol.writeUnsubscribe(sid: sid, max: max - record.delivered, into: &buffer)
                }
                s.subscriptions[sid]?.deliveredOnConnection = 0
            }
            buffer.writeBuffer(&s.pending)
            s.pending.clear()
            channel.writeAndFlush(buffer, promise: nil)
            s.channel = channel
            s.serverInfo = info
            s.currentServer = server
            Self.learn(info, from: server, in: &s)
            s.reconnectTask = nil
            Self.setStatus(.connected, in: &s)
            return true
        }
        tellStatusWatchers()
        guard installed else {
            try? await channel.close()
            throw NATSError.connectionClosed
        }
        logger.info("nats connected", metadata: ["server": "\(server)", "server_id": "\(info.serverID)"])
        channel.closeFuture.whenComplete { [weak self] _ in
            guard let self else { return }
            // Hop: the close may complete inside a write made under the lock.
            channel.eventLoop.execute { self.connectionLost(channel) }
        }
    }

    private func connectionLost(_ channel: any Channel) {
        let reconnect: Bool = state.withLockedValue { s in
            guard s.channel === channel else { return false }
            s.channel = nil
            // Bytes not handed to the lost connection yet go out first on the next one.
            s.pending.writeBuffer(&s.outbound)
            s.outbound = ByteBuffer()
            s.outboundScheduled = false
            guard s.status != .closed else { return false }
            Self.setStatus(.reconnecting, in: &s)
            s.reconnectTask = Task { await self.reconnectLoop() }
            return true
        }
        tellStatusWatchers()
        if reconnect { logger.warning("nats connection lost; reconnecting") }
    }

    /// Tries the servers in turn with jittered exponential backoff until one answers, the policy's
    /// attempts run out (then the client closes) or the client is closed. The pool includes servers the
    /// cluster announced; the rotation starts after the server that was lost, so a cluster member that
    /// is up is tried before the one that just went away.
    private func reconnectLoop() async {
        var attempt = 0
        let start: Int = state.withLockedValue { s in
            let pool = Self.pool(options.servers, s)
            guard let current = s.currentServer, let index = pool.firstIndex(of: current) else { return 0 }
            return index + 1
        }
        while !Task.isCancelled {
            if let maxAttempts = options.reconnect.maxAttempts, attempt >= maxAttempts {
                logger.error("nats reconnect attempts exhausted; closing")
                await close()
                return
            }
            try? await Task.sleep(for: options.reconnect.delay(attempt: attempt))
            if Task.isCancelled || status == .closed { return }
            let pool = state.withLockedValue { Self.pool(options.servers, $0) }
            let server = pool[(start + attempt) % pool.count]
            do {
                try await establish(server)
                counters.reconnects.wrappingIncrement(ordering: .relaxed)
                return
            } catch {
                state.withLockedValue { $0.lastError = "reconnect to \(server): \(error)" }
                logger.debug("nats reconnect failed", metadata: ["server": "\(server)", "error": "\(error)"])
                attempt += 1
            }
        }
    }
}

extension NATSClient {
    /// Test hook: closes the current connection as a lost server would; the client reconnects.
    func dropConnection() async {
        guard let channel = state.withLockedValue({ $0.channel }) else { return }
        try? await channel.close()
    }

    /// Test hook: stops (false) or resumes (true) reading the socket, to make the server see a slow consumer.
    func setReading(_ on: Bool) async throws {
        guard let channel = state.withLockedValue({ $0.channel }) else { return }
        try await channel.setOption(.autoRead, value: on).get()
        if on { channel.read() }
    }
}

extension NATSClient: NATSConnectionDelegate {
    func connection(received message: NATSMessage) {
        counters.inMessages.wrappingIncrement(ordering: .relaxed)
        counters.inBytes.wrappingIncrement(by: message.payload.readableBytes, ordering: .relaxed)
        enum Route {
            case none
            case reply(Substring)
            case stream(
                AsyncStream<NATSMessage>.Continuation, SubscriptionCounters, handler: (@Sendable (NATSMessage) -> Void)?,
                finish: Bool)
        }
        let route: Route = state.withLockedValue { s in
            guard var record = s.subscriptions[message.sid] else { return .none }
            switch record.sink {
            case .inbox:
                guard let dot = message.subject.lastIndex(of: ".") else { return .none }
                return .reply(message.subject[message.subject.index(after: dot)...])
            case .stream(let continuation, let counters, let handler):
                record.delivered += 1
                record.deliveredOnConnection += 1
                let finish = record.max.map { record.delivered >= $0 } ?? false
                s.subscriptions[message.sid] = finish ? nil : record
                return .stream(continuation, counters, handler: handler, finish: finish)
            }
        }
        switch route {
        case .none:
            break
        case .reply(let token):
            resolveRequest(token, with: .success(message))
        case .stream(let continuation, let subscriptionCounters, let handler?, let finish):
            subscriptionCounters.delivered.wrappingIncrement(ordering: .relaxed)
            handler(message)
            if finish { continuation.finish() }
        case .stream(let continuation, let subscriptionCounters, nil, let finish):
            subscriptionCounters.delivered.wrappingIncrement(ordering: .relaxed)
            if case .dropped = continuation.yield(message) {
                subscriptionCounters.dropped.wrappingIncrement(ordering: .relaxed)
                counters.droppedMessages.wrappingIncrement(ordering: .relaxed)
            }
            if finish { continuation.finish() }
        }
    }

    func connection(receivedInfo info: ServerInfo) {
        state.withLockedValue { s in
            s.serverInfo = info
            if let server = s.currentServer { Self.learn(info, from: server, in: &s) }
        }
    }

    func connection(failed error: any Error) {
        state.withLockedValue { $0.lastError = "\(error)" }
    }

    func connection(receivedError text: String) {
        counters.serverErrors.wrappingIncrement(ordering: .relaxed)
        state.withLockedValue { $0.lastError = text }
    }
}

/// A result delivered once to one waiter, whichever of several racing completions comes first
/// (a PONG, a timeout, a closed channel).
final class OneShot<Value: Sendable>: Sendable {
    private let state = NIOLockedValueBox<(CheckedContinuation<Value, any Error>?, Result<Value, any Error>?, Bool)>(
        (nil, nil, false)
    )

    func resume(_ result: Result<Value, any Error>) {
        let continuation: CheckedContinuation<Value, any Error>? = state.withLockedValue { s in
            guard !s.2 else { return nil }
            s.2 = true
            if let continuation = s.0 {
                s.0 = nil
                return continuation
            }
            s.1 = result
            return nil
        }
        continuation?.resume(with: result)
    }

    func wait() async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<Value, any Error>? = state.withLockedValue { s in
                if let result = s.1 { return result }
                s.0 = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}
