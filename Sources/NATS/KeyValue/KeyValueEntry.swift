import Foundation
import NIOCore

/// One value of a key: what `get` returns and what a watcher delivers.
public struct KeyValueEntry: Sendable, Equatable {
    public enum Operation: String, Sendable, Equatable {
        case put = "PUT"
        case delete = "DEL"
        case purge = "PURGE"
    }

    public var bucket: String
    public var key: String
    public var value: ByteBuffer
    /// The stream sequence of this value: the revision to pass to `update` for compare-and-set.
    public var revision: UInt64
    public var created: Date
    public var operation: Operation
    /// For watchers: how many more values the watcher has to catch up on (0: up to date).
    public var delta: UInt64

    public var string: String { String(buffer: value) }
}

/// Conflicts and refusals of KV operations, typed so a caller can retry a lost compare-and-set.
public enum KeyValueError: Error, Sendable, Equatable {
    /// `create` on a key that has a value.
    case keyExists(key: String)
    /// `update` with a revision that is no longer the key's latest: somebody else wrote first.
    case wrongLastRevision(key: String, expected: UInt64)
    /// Keys are `[-/_=.a-zA-Z0-9]+`, not starting or ending with '.'.
    case invalidKey(String)
    /// Bucket names are `[a-zA-Z0-9_-]+`.
    case invalidBucketName(String)
    case bucketNotFound(String)
}
