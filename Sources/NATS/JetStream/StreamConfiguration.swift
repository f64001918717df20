import Foundation

/// A stream's configuration, as `$JS.API.STREAM.CREATE` takes it. Unset optionals keep the server's
/// defaults (unlimited, no age limit, 2-minute duplicate window).
public struct StreamConfiguration: Sendable, Equatable, Codable {
    public enum Retention: String, Sendable, Codable { case limits, interest, workqueue }
    public enum Storage: String, Sendable, Codable { case file, memory }
    public enum Discard: String, Sendable, Codable { case old, new }

    public var name: String
    public var subjects: [String]
    public var retention: Retention
    public var storage: Storage
    public var discard: Discard
    public var replicas: Int
    public var maxConsumers: Int?
    public var maxMessages: Int64?
    public var maxBytes: Int64?
    public var maxAge: Duration?
    public var maxMessagesPerSubject: Int64?
    public var maxMessageSize: Int32?
    /// Window in which a repeated `Nats-Msg-Id` is answered as a duplicate instead of stored again.
    public var duplicateWindow: Duration?
    public var denyDelete: Bool
    public var denyPurge: Bool
    public var allowRollup: Bool
    public var allowDirect: Bool
    public var description: String?

    public init(
        name: String, subjects: [String] = [], retention: Retention = .limits, storage: Storage = .file,
        discard: Discard = .old, replicas: Int = 1, maxConsumers: Int? = nil, maxMessages: Int64? = nil,
        maxBytes: Int64? = nil, maxAge: Duration? = nil, maxMessagesPerSubject: Int64? = nil,
        maxMessageSize: Int32? = nil, duplicateWindow: Duration? = nil, denyDelete: Bool = false,
        denyPurge: Bool = false, allowRollup: Bool = false, allowDirect: Bool = false, description: String? = nil
    ) {
        self.name = name
        self.subjects = subjects
        self.retention = retention
        self.storage = storage
        self.discard = discard
        self.replicas = replicas
        self.maxConsumers = maxConsumers
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
        self.maxAge = maxAge
        self.maxMessagesPerSubject = maxMessagesPerSubject
        self.maxMessageSize = maxMessageSize
        self.duplicateWindow = duplicateWindow
        self.denyDelete = denyDelete
        self.denyPurge = denyPurge
        self.allowRollup = allowRollup
        self.allowDirect = allowDirect
        self.description = description
    }

    enum CodingKeys: String, CodingKey {
        case name, subjects, retention, storage, discard, description
        case replicas = "num_replicas"
        case maxConsumers = "max_consumers"
        case maxMessages = "max_msgs"
        case maxBytes = "max_bytes"
        case maxAge = "max_age"
        case maxMessagesPerSubject = "max_msgs_per_subject"
        case maxMessageSize = "max_msg_size"
        case duplicateWindow = "duplicate_window"
        case denyDelete = "deny_delete"
        case denyPurge = "deny_purge"
        case allowRollup = "allow_rollup_hdrs"
        case allowDirect = "allow_direct"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        subjects = try c.decodeIfPresent([String].self, forKey: .subjects) ?? []
        retention = try c.decodeIfPresent(Retention.self, forKey: .retention) ?? .limits
        storage = try c.decodeIfPresent(Storage.self, forKey: .storage) ?? .file
        discard = try c.decodeIfPresent(Discard.self, forKey: .discard) ?? .old
        replicas = try c.decodeIfPresent(Int.self, forKey: .replicas) ?? 1
        maxConsumers = try c.decodeIfPresent(Int.self, forKey: .maxConsumers).flatMap { $0 < 0 ? nil : $0 }
        maxMessages = try c.decodeIfPresent(Int64.self, forKey: .maxMessages).flatMap { $0 < 0 ? nil : $0 }
        maxBytes = try c.decodeIfPresent(Int64.self, forKey: .maxBytes).flatMap { $0 < 0 ? nil : $0 }
        maxAge = try c.decodeNanoseconds(forKey: .maxAge).flatMap { $0 == .zero ? nil : $0 }
        maxMessagesPerSubject = try c.decodeIfPresent(Int64.self, forKey: .maxMessagesPerSubject)
            .flatMap { $0 < 0 ? nil : $0 }
        maxMessageSize = try c.decodeIfPresent(Int32.self, forKey: .maxMessageSize).flatMap { $0 < 0 ? nil : $0 }
        duplicateWindow = try c.decodeNanoseconds(forKey: .duplicateWindow)
        denyDelete = try c.decodeIfPresent(Bool.self, forKey: .denyDelete) ?? false
        denyPurge = try c.decodeIfPresent(Bool.self, forKey: .denyPurge) ?? false
        allowRollup = try c.decodeIfPresent(Bool.self, forKey: .allowRollup) ?? false
        allowDirect = try c.decodeIfPresent(Bool.self, forKey: .allowDirect) ?? false
        description = try c.decodeIfPresent(String.self, forKey: .description)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        if !subjects.isEmpty { try c.encode(subjects, forKey: .subjects) }
        try c.encode(retention, forKey: .retention)
        try c.encode(storage, forKey: .storage)
        try c.encode(discard, forKey: .discard)
        try c.encode(replicas, forKey: .replicas)
        try c.encode(maxConsumers ?? -1, forKey: .maxConsumers)
        try c.encode(maxMessages ?? -1, forKey: .maxMessages)
        try c.encode(maxBytes ?? -1, forKey: .maxBytes)
        try c.encode(maxAge?.nanoseconds ?? 0, forKey: .maxAge)
        try c.encode(maxMessagesPerSubject ?? -1, forKey: .maxMessagesPerSubject)
        try c.encode(maxMessageSize ?? -1, forKey: .maxMessageSize)
        try c.encodeNanoseconds(duplicateWindow, forKey: .duplicateWindow)
        try c.encode(denyDelete, forKey: .denyDelete)
        try c.encode(denyPurge, forKey: .denyPurge)
        try c.encode(allowRollup, forKey: .allowRollup)
        try c.encode(allowDirect, forKey: .allowDirect)
        try c.encodeIfPresent(description, forKey: .description)
    }
}

/// A stream's configuration and state, as `$JS.API.STREAM.INFO` answers.
public struct StreamInfo: Sendable, Decodable {
    public var config: StreamConfiguration
    public var created: Date
    public var state: StreamState
}

/// How much a stream holds.
public struct StreamState: Sendable, Equatable, Decodable {
    public var messages: UInt64
    public var bytes: UInt64
    public var firstSequence: UInt64
    public var lastSequence: UInt64
    public var consumerCount: Int

    enum CodingKeys: String, CodingKey {
        case messages, bytes
        case firstSequence = "first_seq"
        case lastSequence = "last_seq"
        case consumerCount = "consumer_count"
    }
}

/// The answer to a JetStream publish: where the message was stored, or that it was a duplicate.
public struct PubAck: Sendable, Equatable, Decodable {
    public var stream: String
    /// The stream sequence of the stored message (of the original, for a duplicate).
    public var sequence: UInt64
    /// True when the `Nats-Msg-Id` was seen within the stream's duplicate window: nothing was stored.
    public var duplicate: Bool
    public var domain: String?

    enum CodingKeys: String, CodingKey {
        case stream, domain, duplicate
        case sequence = "seq"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        stream = try c.decode(String.self, forKey: .stream)
        sequence = try c.decode(UInt64.self, forKey: .sequence)
        duplicate = try c.decodeIfPresent(Bool.self, forKey: .duplicate) ?? false
        domain = try c.decodeIfPresent(String.self, forKey: .domain)
    }
}
