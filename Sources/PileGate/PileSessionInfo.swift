import Foundation
import NIOConcurrencyHelpers
import NIOCore
import YKC

/// What a logged-in session is: identity, login attributes, lane. Immutable once logged in, so
/// it can be shared freely across loops and with the backend hub.
public struct PileSessionInfo: Sendable, Hashable {
    /// Unique per connection within this process.
    public var connectionId: UInt64
    public var pileId: PileID
    public var remoteAddress: String
    /// Source IP without port (per-address limits and lane CIDR rules).
    public var remoteHost: String
    public var login: Login
    /// The lane decided at login; "" is the base lane.
    public var lane: String
    public var connectedAt: Date
    public var loggedInAt: Date

    public init(
        connectionId: UInt64, pileId: PileID, remoteAddress: String, remoteHost: String, login: Login, lane: String,
        connectedAt: Date, loggedInAt: Date
    ) {
        self.connectionId = connectionId
        self.pileId = pileId
        self.remoteAddress = remoteAddress
        self.remoteHost = remoteHost
        self.login = login
        self.lane = lane
        self.connectedAt = connectedAt
        self.loggedInAt = loggedInAt
    }
}

/// A handle on a live session that other loops (admin API, backend hub, a newer login) use to
/// reach it. All work is hopped onto the session's own event loop.
public final class PileSessionHandle: Sendable {
    public let info: PileSessionInfo
    public let channel: any Channel

    init(info: PileSessionInfo, channel: any Channel) {
        self.info = info
        self.channel = channel
    }

    /// Asks the session to close with `reason` (it emits `pile_offline` with that reason).
    public func close(reason: OfflineReason) {
        channel.pipeline.fireUserInboundEventTriggered(SessionCommand.close(reason))
    }

    /// Sends a platform-originated message with the session's next sequence number; the future
    /// completes with the sequence bytes used, once written.
    public func send(_ message: YKCMessage) -> EventLoopFuture<YKCSequence> {
        let promise = channel.eventLoop.makePromise(of: YKCSequence.self)
        channel.pipeline.fireUserInboundEventTriggered(SessionCommand.send(message, promise))
        return promise.futureResult
    }

    /// Sends a command and waits for the pile's reply frame (matched by reply code and sequence
    /// bytes), failing with `PileCommandError.timeout` or `.pileOffline`.
    public func request(_ message: YKCMessage, timeout: TimeAmount) -> EventLoopFuture<YKCMessage> {
        let promise = channel.eventLoop.makePromise(of: YKCMessage.self)
        channel.pipeline.fireUserInboundEventTriggered(SessionCommand.request(message, timeout, promise))
        return promise.futureResult
    }

    /// Sends a reply with given sequence bytes (answers to pile requests decided elsewhere).
    public func reply(_ message: YKCMessage, sequence: YKCSequence) {
        channel.pipeline.fireUserInboundEventTriggered(SessionCommand.reply(message, sequence))
    }

    /// Live per-gun state and counters, read on the session's loop.
    public func liveState() -> EventLoopFuture<PileLiveState> {
        let promise = channel.eventLoop.makePromise(of: PileLiveState.self)
        channel.pipeline.fireUserInboundEventTriggered(SessionCommand.inspect(promise))
        return promise.futureResult
    }
}

/// Requests delivered to a session handler from other loops as user events.
enum SessionCommand: Sendable {
    case close(OfflineReason)
    case send(YKCMessage, EventLoopPromise<YKCSequence>)
    case request(YKCMessage, TimeAmount, EventLoopPromise<YKCMessage>)
    case reply(YKCMessage, YKCSequence)
    case inspect(EventLoopPromise<PileLiveState>)
}

/// A snapshot of what a session knows right now.
public struct PileLiveState: Sendable, Codable {
    public struct Gun: Sendable, Codable {
        public var gun: Int
        public var state: String
        public var lastHeartbeat: Date?
        public var status: String?
    }
    public var guns: [Gun]
    public var framesIn: Int
    public var framesOut: Int
    public var lastFrameAt: Date?
}

/// Every logged-in session by pile id, shared by all event loops.
///
/// Touched at login, logout, kick and command lookups — never per frame — so a few sharded locks
/// suffice. Sharding keeps a login storm on two loops from serialising on one lock.
public final class SessionDirectory: Sendable {
    private static let shardCount = 16
    private let shards: [NIOLockedValueBox<[PileID: PileSessionHandle]>] = (0..<16).map { _ in NIOLockedValueBox([:]) }

    public init() {}

    private func shard(_ id: PileID) -> NIOLockedValueBox<[PileID: PileSessionHandle]> {
        shards[Int(truncatingIfNeeded: (id.raw &* 0x9E37_79B9_7F4A_7C15) >> 60) % Self.shardCount]
    }

    /// What `register` did.
    enum Registration {
        /// The handle holds the pile now; `replacing` is the session it took over, if any.
        case registered(replacing: PileSessionHandle?)
        /// A newer connection already holds the pile; nothing changed.
        case superseded
    }

    /// Registers `handle` unless a newer connection of the same pile already holds it (connection
    /// ids grow with every accept): a login that is decided late on an older connection, on
    /// another event loop, must not displace the pile's newest connection, whatever order the
    /// loops run in. `whileHeld` runs under the pile's lock, after the change and only when the
    /// handle was registered: what a session publishes about the pile going online there is
    /// ordered with what `remove` publishes about it going offline.
    func register(_ handle: PileSessionHandle, whileHeld: () -> Void = {}) -> Registration {
        shard(handle.info.pileId).withLockedValue { map in
            let old = map[handle.info.pileId]
            if let old, old.info.connectionId > handle.info.connectionId { return .superseded }
            map[handle.info.pileId] = handle
            whileHeld()
            return .registered(replacing: old)
        }
    }

    /// Removes the entry only if it still belongs to `connectionId` (a takeover may have replaced
    /// it); `whileHeld` runs under the pile's lock, only when it was removed. Returns whether it was.
    @discardableResult
    func remove(pileId: PileID, connectionId: UInt64, whileHeld: () -> Void = {}) -> Bool {
        shard(pileId).withLockedValue { map in
            guard map[pileId]?.info.connectionId == connectionId else { return false }
            map[pileId] = nil
            whileHeld()
            return true
        }
    }

    /// Replaces the handle of the same connection (its info changed, e.g. its lane).
    func update(_ handle: PileSessionHandle) {
        shard(handle.info.pileId).withLockedValue { map in
            if map[handle.info.pileId]?.info.connectionId == handle.info.connectionId { map[handle.info.pileId] = handle }
        }
    }

    public func session(for id: PileID) -> PileSessionHandle? {
        shard(id).withLockedValue { $0[id] }
    }

    public var count: Int { shards.reduce(0) { $0 + $1.withLockedValue { $0.count } } }

    /// All sessions sorted by pile id, starting after `after`, at most `limit`.
    public func page(after: PileID?, limit: Int) -> [PileSessionHandle] {
        var all: [PileSessionHandle] = []
        for s in shards {
            s.withLockedValue { map in
                for (id, h) in map where after.map({ id > $0 }) ?? true { all.append(h) }
            }
        }
        all.sort { $0.info.pileId < $1.info.pileId }
        return Array(all.prefix(limit))
    }

    public func all() -> [PileSessionHandle] {
        shards.flatMap { $0.withLockedValue { Array($0.values) } }
    }

    /// Sessions per lane ("" = base).
    public func countByLane() -> [String: Int] {
        var out: [String: Int] = [:]
        for s in shards {
            s.withLockedValue { map in
                for h in map.values { out[h.info.lane, default: 0] += 1 }
            }
        }
        return out
    }
}
