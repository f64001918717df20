import NIOConcurrencyHelpers
import NIOCore
import YKC

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
