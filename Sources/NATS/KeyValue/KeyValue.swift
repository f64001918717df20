import Foundation
import NIOCore

extension JetStream {
    /// Creates a bucket (or returns the existing one with the same configuration).
    public func createKeyValue(_ config: KeyValueConfiguration) async throws -> KeyValue {
        try KeyValue.validate(bucket: config.bucket)
        try await createStream(config.streamConfiguration)
        return KeyValue(jetStream: self, bucket: config.bucket)
    }

    /// An existing bucket; throws `KeyValueError.bucketNotFound` when it does not exist.
    public func keyValue(_ bucket: String) async throws -> KeyValue {
        try KeyValue.validate(bucket: bucket)
        do {
            _ = try await streamInfo("KV_\(bucket)")
        } catch NATSError.jetStream(let error) where error.errorCode == JetStreamAPIError.streamNotFound {
            throw KeyValueError.bucketNotFound(bucket)
        }
        return KeyValue(jetStream: self, bucket: bucket)
    }

    public func deleteKeyValue(_ bucket: String) async throws {
        try KeyValue.validate(bucket: bucket)
        try await deleteStream("KV_\(bucket)")
    }
}

/// A JetStream key-value bucket: shared state with revisions. Every write returns the new revision;
/// `update` writes only if the key is still at the revision the caller read (compare-and-set), so two
/// concurrent edits cannot silently lose one. `watch` delivers the current values, then every change.
public struct KeyValue: Sendable {
    public let jetStream: JetStream
    public let bucket: String

    var streamName: String { "KV_\(bucket)" }
    func subject(_ key: String) -> String { "$KV.\(bucket).\(key)" }

    /// Writes `value`; returns its revision.
    @discardableResult
    public func put(_ key: String, _ value: ByteBuffer) async throws -> UInt64 {
        try Self.validate(key: key)
        return try await jetStream.publish(value, to: subject(key)).sequence
    }

    @discardableResult
    public func put(_ key: String, _ value: String) async throws -> UInt64 {
        try await put(key, ByteBuffer(string: value))
    }

    /// Writes `value` only if the key has none (never written, or deleted); else `KeyValueError.keyExists`.
    @discardableResult
    public func create(_ key: String, _ value: ByteBuffer) async throws -> UInt64 {
        do {
            return try await update(key, value, revision: 0)
        } catch KeyValueError.wrongLastRevision {
            // A deleted or purged key has a marker as its last value: creating over it is allowed.
            if let last = try await entry(key), last.operation != .put {
                do {
                    return try await update(key, value, revision: last.revision)
                } catch KeyValueError.wrongLastRevision {
                    throw KeyValueError.keyExists(key: key)
                }
            }
            throw KeyValueError.keyExists(key: key)
        }
    }

    @discardableResult
    public func create(_ key: String, _ value: String) async throws -> UInt64 {
        try await create(key, ByteBuffer(string: value))
    }

    /// Writes `value` only if the key's latest revision is `revision` (0: the key was never written);
    /// else `KeyValueError.wrongLastRevision`. Returns the new revision.
    @discardableResult
    public func update(_ key: String, _ value: ByteBuffer, revision: UInt64) async throws -> UInt64 {
        try Self.validate(key: key)
        do {
            return try await jetStream.publish(value, to: subject(key), expectedLastSubjectSequence: revision).sequence
        } catch NATSError.jetStream(let error) where error.errorCode == JetStreamAPIError.wrongLastSequence {
            throw KeyValueError.wrongLastRevision(key: key, expected: revision)
        }
    }

    @discardableResult
    public func update(_ key: String, _ value: String, revision: UInt64) async throws -> UInt64 {
        try await update(key, ByteBuffer(string: value), revision: revision)
    }

    /// The key's current value, or nil when it has none (never written, deleted or purged).
    public func get(_ key: String) async throws -> KeyValueEntry? {
        guard let entry = try await entry(key), entry.operation == .put else { return nil }
        return entry
    }

    /// The key's latest entry including delete/purge markers.
    func entry(_ key: String) async throws -> KeyValueEntry? {
        try Self.validate(key: key)
        struct Request: Encodable {
            var lastBySubject: String
            enum CodingKeys: String, CodingKey { case lastBySubject = "last_by_subj" }
        }
        let response: StoredMessageResponse
        do {
            response = try await jetStream.api("STREAM.MSG.GET.\(streamName)", body: Request(lastBySubject: subject(key)))
        } catch NATSError.jetStream(let error) where error.errorCode == JetStreamAPIError.noMessageFound {
            return nil
        }
        let stored = response.message
        var headers: NATSHeaders?
        if let hdrs = stored.hdrs, let data = Data(base64Encoded: hdrs) {
            headers = try NATSHeaders.parse(ByteBuffer(bytes: data).readableBytesView)
        }
        let value = stored.data.flatMap { Data(base64Encoded: $0) }.map { ByteBuffer(bytes: $0) } ?? ByteBuffer()
        return KeyValueEntry(
            bucket: bucket, key: key, value: value, revision: stored.seq, created: stored.time,
            operation: Self.operation(headers), delta: 0
        )
    }

    /// Marks the key deleted (history is kept); `get` then returns nil and watchers see a `.delete`.
    public func delete(_ key: String) async throws {
        try Self.validate(key: key)
        _ = try await jetStream.publish(ByteBuffer(), to: subject(key), headers: ["KV-Operation": "DEL"])
    }

    /// Deletes the key and its history (a roll-up to one purge marker).
    public func purge(_ key: String) async throws {
        try Self.validate(key: key)
        var headers = NATSHeaders()
        headers["KV-Operation"] = "PURGE"
        headers["Nats-Rollup"] = "sub"
        _ = try await jetStream.publish(ByteBuffer(), to: subject(key), headers: headers)
    }

    /// Watches keys matching `keys` (a key, or a pattern with `*` / `>`; `>` for all). Delivers the
    /// current value of every matching key (newest only, deleted keys as `.delete`), then each change as
    /// it happens. The watcher ends when `stop()` is called or the client closes; it resumes by itself
    /// after the client reconnects (see `KeyValueWatcher`).
    public func watch(_ keys: String = ">", includeHistory: Bool = false) async throws -> KeyValueWatcher {
        try Self.validate(pattern: keys)
        let client = jetStream.client
        let inbox = client.newInbox()
        let subscription = try client.subscribeNoFlush(to: inbox, bufferLimit: 1_000_000)
        let config = ConsumerConfiguration(
            deliverPolicy: includeHistory ? .all : .lastPerSubject, ackPolicy: .none, filterSubject: subject(keys),
            deliverSubject: inbox, idleHeartbeat: .seconds(5), flowControl: true,
            inactiveThreshold: .seconds(30)
        )
        let info: ConsumerInfo
        do {
            info = try await jetStream.createConsumer(stream: streamName, config)
        } catch {
            subscription.unsubscribe()
            throw error
        }
        return KeyValueWatcher(
            keyValue: self, subscription: subscription, configuration: config, consumer: info.name,
            initialPending: info.numPending
        )
    }

    /// The keys that have a value now.
    public func keys() async throws -> [String] {
        let watcher = try await watch()
        defer { watcher.stop() }
        var keys: [String] = []
        guard watcher.initialPending > 0 else { return [] }
        for try await entry in watcher {
            if entry.operation == .put { keys.append(entry.key) } else { keys.removeAll { $0 == entry.key } }
            if entry.delta == 0 { break }
        }
        return keys
    }

    static func operation(_ headers: NATSHeaders?) -> KeyValueEntry.Operation {
        guard let raw = headers?["KV-Operation"] else { return .put }
        return KeyValueEntry.Operation(rawValue: raw) ?? .put
    }

    static func validate(bucket: String) throws {
        guard !bucket.isEmpty, bucket.utf8.allSatisfy({ isAlphanumeric($0) || $0 == 95 || $0 == 45 }) else {
            throw KeyValueError.invalidBucketName(bucket)
        }
    }

    static func validate(key: String) throws {
        guard !key.isEmpty, !key.hasPrefix("."), !key.hasSuffix("."),
            key.utf8.allSatisfy({ isAlphanumeric($0) || "-/_=.".utf8.contains($0) })
        else { throw KeyValueError.invalidKey(key) }
    }

    static func validate(pattern: String) throws {
        guard !pattern.isEmpty, !pattern.hasPrefix("."), !pattern.hasSuffix("."),
            pattern.utf8.allSatisfy({ isAlphanumeric($0) || "-/_=.*>".utf8.contains($0) })
        else { throw KeyValueError.invalidKey(pattern) }
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte)
    }

    struct StoredMessageResponse: Decodable {
        var message: StoredMessage
    }

    struct StoredMessage: Decodable {
        var subject: String
        var seq: UInt64
        var hdrs: String?
        var data: String?
        var time: Date
    }
}
