/// A KV bucket's configuration. A bucket is a stream `KV_<bucket>` on `$KV.<bucket>.>` keeping
/// `history` values per key; only the newest matters for `get`.
public struct KeyValueConfiguration: Sendable, Equatable {
    public var bucket: String
    public var description: String?
    /// Values kept per key (1…64).
    public var history: Int
    /// Values older than this expire; nil keeps them.
    public var ttl: Duration?
    public var maxValueSize: Int32?
    public var maxBytes: Int64?
    public var storage: StreamConfiguration.Storage
    public var replicas: Int

    public init(
        bucket: String, description: String? = nil, history: Int = 1, ttl: Duration? = nil,
        maxValueSize: Int32? = nil, maxBytes: Int64? = nil, storage: StreamConfiguration.Storage = .file,
        replicas: Int = 1
    ) {
        self.bucket = bucket
        self.description = description
        self.history = history
        self.ttl = ttl
        self.maxValueSize = maxValueSize
        self.maxBytes = maxBytes
        self.storage = storage
        self.replicas = replicas
    }

    /// The stream behind the bucket, configured as other NATS clients configure it, so buckets are
    /// shared with them.
    var streamConfiguration: StreamConfiguration {
        var duplicateWindow = Duration.seconds(120)
        if let ttl, ttl < duplicateWindow { duplicateWindow = ttl }
        return StreamConfiguration(
            name: "KV_\(bucket)", subjects: ["$KV.\(bucket).>"], retention: .limits, storage: storage,
            discard: .new, replicas: replicas, maxBytes: maxBytes, maxAge: ttl,
            maxMessagesPerSubject: Int64(history), maxMessageSize: maxValueSize, duplicateWindow: duplicateWindow,
            denyDelete: true, allowRollup: true, allowDirect: true, description: description
        )
    }
}
