import Foundation

/// A consumer's configuration for `$JS.API.CONSUMER.CREATE`. A durable pull consumer needs only
/// `durableName`; ack wait and max deliver decide when and how often an unacknowledged message returns.
public struct ConsumerConfiguration: Sendable, Equatable, Codable {
    public enum DeliverPolicy: String, Sendable, Codable {
        case all, last, new
        case byStartSequence = "by_start_sequence"
        case lastPerSubject = "last_per_subject"
    }

    public enum AckPolicy: String, Sendable, Codable { case none, all, explicit }
    public enum ReplayPolicy: String, Sendable, Codable { case instant, original }

    /// Durable name: the consumer survives restarts and client disconnects. Nil for ephemeral consumers.
    public var durableName: String?
    public var description: String?
    public var deliverPolicy: DeliverPolicy
    public var startSequence: UInt64?
    public var ackPolicy: AckPolicy
    /// How long the server waits for an ack before delivering the message again.
    public var ackWait: Duration?
    /// Deliveries of one message at most (then it is no longer redelivered); nil: unlimited.
    public var maxDeliver: Int?
    public var filterSubject: String?
    public var replayPolicy: ReplayPolicy
    public var maxAckPending: Int?
    public var maxWaiting: Int?
    /// For push consumers: where the server sends messages (set by `KeyValue.watch`).
    public var deliverSubject: String?
    public var headersOnly: Bool
    public var idleHeartbeat: Duration?
    public var flowControl: Bool
    /// Ephemeral consumers go away after this long without interest.
    public var inactiveThreshold: Duration?

    public init(
        durableName: String? = nil, description: String? = nil, deliverPolicy: DeliverPolicy = .all,
        startSequence: UInt64? = nil, ackPolicy: AckPolicy = .explicit, ackWait: Duration? = nil,
        maxDeliver: Int? = nil, filterSubject: String? = nil, replayPolicy: ReplayPolicy = .instant,
        maxAckPending: Int? = nil, maxWaiting: Int? = nil, deliverSubject: String? = nil, headersOnly: Bool = false,
        idleHeartbeat: Duration? = nil, flowControl: Bool = false, inactiveThreshold: Duration? = nil
    ) {
        self.durableName = durableName
        self.description = description
        self.deliverPolicy = deliverPolicy
        self.startSequence = startSequence
        self.ackPolicy = ackPolicy
        self.ackWait = ackWait
        self.maxDeliver = maxDeliver
        self.filterSubject = filterSubject
        self.replayPolicy = replayPolicy
        self.maxAckPending = maxAckPending
        self.maxWaiting = maxWaiting
        self.deliverSubject = deliverSubject
        self.headersOnly = headersOnly
        self.idleHeartbeat = idleHeartbeat
        self.flowControl = flowControl
        self.inactiveThreshold = inactiveThreshold
    }

    enum CodingKeys: String, CodingKey {
        case description
        case durableName = "durable_name"
        case deliverPolicy = "deliver_policy"
        case startSequence = "opt_start_seq"
        case ackPolicy = "ack_policy"
        case ackWait = "ack_wait"
        case maxDeliver = "max_deliver"
        case filterSubject = "filter_subject"
        case replayPolicy = "replay_policy"
        case maxAckPending = "max_ack_pending"
        case maxWaiting = "max_waiting"
        case deliverSubject = "deliver_subject"
        case headersOnly = "headers_only"
        case idleHeartbeat = "idle_heartbeat"
        case flowControl = "flow_control"
        case inactiveThreshold = "inactive_threshold"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        durableName = try c.decodeIfPresent(String.self, forKey: .durableName)
        description = try c.decodeIfPresent(String.self, forKey: .description)
        deliverPolicy = try c.decodeIfPresent(DeliverPolicy.self, forKey: .deliverPolicy) ?? .all
        startSequence = try c.decodeIfPresent(UInt64.self, forKey: .startSequence)
        ackPolicy = try c.decodeIfPresent(AckPolicy.self, forKey: .ackPolicy) ?? .explicit
        ackWait = try c.decodeNanoseconds(forKey: .ackWait)
        maxDeliver = try c.decodeIfPresent(Int.self, forKey: .maxDeliver).flatMap { $0 < 0 ? nil : $0 }
        filterSubject = try c.decodeIfPresent(String.self, forKey: .filterSubject)
        replayPolicy = try c.decodeIfPresent(ReplayPolicy.self, forKey: .replayPolicy) ?? .instant
        maxAckPending = try c.decodeIfPresent(Int.self, forKey: .maxAckPending)
        maxWaiting = try c.decodeIfPresent(Int.self, forKey: .maxWaiting)
        deliverSubject = try c.decodeIfPresent(String.self, forKey: .deliverSubject)
        headersOnly = try c.decodeIfPresent(Bool.self, forKey: .headersOnly) ?? false
        idleHeartbeat = try c.decodeNanoseconds(forKey: .idleHeartbeat)
        flowControl = try c.decodeIfPresent(Bool.self, forKey: .flowControl) ?? false
        inactiveThreshold = try c.decodeNanoseconds(forKey: .inactiveThreshold)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(durableName, forKey: .durableName)
        try c.encodeIfPresent(description, forKey: .description)
        try c.encode(deliverPolicy, forKey: .deliverPolicy)
        try c.encodeIfPresent(startSequence, forKey: .startSequence)
        try c.encode(ackPolicy, forKey: .ackPolicy)
        try c.encodeNanoseconds(ackWait, forKey: .ackWait)
        try c.encodeIfPresent(maxDeliver, forKey: .maxDeliver)
        try c.encodeIfPresent(filterSubject, forKey: .filterSubject)
        try c.encode(replayPolicy, forKey: .replayPolicy)
        try c.encodeIfPresent(maxAckPending, forKey: .maxAckPending)
        try c.encodeIfPresent(maxWaiting, forKey: .maxWaiting)
        try c.encodeIfPresent(deliverSubject, forKey: .deliverSubject)
        if headersOnly { try c.encode(headersOnly, forKey: .headersOnly) }
        try c.encodeNanoseconds(idleHeartbeat, forKey: .idleHeartbeat)
        if flowControl { try c.encode(flowControl, forKey: .flowControl) }
        try c.encodeNanoseconds(inactiveThreshold, forKey: .inactiveThreshold)
    }
}

/// A consumer's configuration and progress, as `$JS.API.CONSUMER.INFO` answers.
public struct ConsumerInfo: Sendable, Decodable {
    public var streamName: String
    public var name: String
    public var config: ConsumerConfiguration
    public var created: Date
    public var delivered: SequenceInfo
    public var ackFloor: SequenceInfo
    /// Delivered and not yet acknowledged.
    public var numAckPending: Int
    /// Messages delivered more than once and still unacknowledged.
    public var numRedelivered: Int
    /// Pull requests waiting for messages.
    public var numWaiting: Int
    /// Messages in the stream the consumer has not delivered yet.
    public var numPending: UInt64

    enum CodingKeys: String, CodingKey {
        case name, config, created, delivered
        case streamName = "stream_name"
        case ackFloor = "ack_floor"
        case numAckPending = "num_ack_pending"
        case numRedelivered = "num_redelivered"
        case numWaiting = "num_waiting"
        case numPending = "num_pending"
    }

    /// Consumer and stream sequence of the last delivered (or acknowledged) message.
    public struct SequenceInfo: Sendable, Equatable, Decodable {
        public var consumerSequence: UInt64
        public var streamSequence: UInt64

        enum CodingKeys: String, CodingKey {
            case consumerSequence = "consumer_seq"
            case streamSequence = "stream_seq"
        }
    }
}
