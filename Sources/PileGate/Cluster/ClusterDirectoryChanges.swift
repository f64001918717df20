import NIOCore
import YKC

/// One node's writes to the pile directory, as it tells the other nodes about them
/// (docs/CLUSTER.md, "Pile directory"): once its KV puts and deletes have their PubAcks, the node
/// publishes what it wrote (25 ms of it at most), with the revisions the bucket gave, in one
/// message on `<cluster>.node.<node>.directory`.
///
/// Why not the bucket's own watch: a watch delivers every write to every node, one message each.
/// A login wave of 96,000 piles over 6 nodes was 576,000 deliveries for the server and 96,000
/// messages parsed and awaited per node; in batches the server sends about 130,000 messages in
/// all (PubAcks included) and uses a fifth less CPU (docs/BENCHMARKS.md, "The pile directory's
/// changes in batches"). The bucket stays the record: a node loads it
/// whole when it starts, after a reconnect, and when it sees a gap in an origin's `sequence`.
///
/// Binary, big-endian: a version byte (1); the origin node id (2-byte length, UTF-8); the origin's
/// incarnation (`startedAt`, the bits of a Double); the batch's sequence (8 bytes, from 1 per
/// incarnation); the number of changes (4 bytes); then per change a kind byte (1 put, 2 delete),
/// the pile id's raw 7-byte value as 8 bytes, the revision (8 bytes) and, for a put, the entry:
/// node and address and lane as 2-byte length + UTF-8, incarnation and since as Double bits, the
/// connection id (8 bytes).
struct ClusterDirectoryChanges: Sendable, Equatable {
    enum Change: Sendable, Equatable {
        case put(PileID, ClusterPileEntry, revision: UInt64)
        /// The pile's key was deleted; `revision` is the delete's own stream sequence.
        case delete(PileID, revision: UInt64)

        var pile: PileID {
            switch self {
            case .put(let pile, _, _), .delete(let pile, _): return pile
            }
        }
    }

    static let version: UInt8 = 1
    /// A batch is closed at about this many bytes (NATS's default `max_payload` is 1 MiB).
    static let maximumBytes = 128 * 1024

    var origin: String
    var incarnation: Double
    var sequence: UInt64
    var changes: [Change]

    func encoded() -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 32 + origin.utf8.count + changes.count * 80)
        buffer.writeInteger(Self.version)
        Self.writeString(origin, to: &buffer)
        buffer.writeInteger(incarnation.bitPattern)
        buffer.writeInteger(sequence)
        buffer.writeInteger(UInt32(truncatingIfNeeded: changes.count))
        for change in changes { Self.write(change, to: &buffer) }
        return buffer
    }

    /// The batch in `payload`; nil when it is not a whole batch of this version (nothing is
    /// applied from a damaged message: the receiver reloads the bucket instead).
    init?(decoding payload: ByteBuffer) {
        var b = payload
        guard b.readInteger(as: UInt8.self) == Self.version, let origin = Self.readString(&b),
            let incarnation = b.readInteger(as: UInt64.self), let sequence = b.readInteger(as: UInt64.self),
            let count = b.readInteger(as: UInt32.self), Int(count) <= b.readableBytes / 17
        else { return nil }
        var changes: [Change] = []
        changes.reserveCapacity(Int(count))
        for _ in 0..<count {
            guard let change = Self.readChange(&b) else { return nil }
            changes.append(change)
        }
        guard b.readableBytes == 0 else { return nil }
        self.init(origin: origin, incarnation: Double(bitPattern: incarnation), sequence: sequence, changes: changes)
    }

    init(origin: String, incarnation: Double, sequence: UInt64, changes: [Change]) {
        self.origin = origin
        self.incarnation = incarnation
        self.sequence = sequence
        self.changes = changes
    }

    /// About how many bytes `change` takes in a batch, for closing batches at `maximumBytes`.
    static func size(of change: Change) -> Int {
        switch change {
        case .delete: return 17
        case .put(_, let e, _): return 47 + e.node.utf8.count + e.address.utf8.count + e.lane.utf8.count
        }
    }

    private static func write(_ change: Change, to buffer: inout ByteBuffer) {
        switch change {
        case .put(let pile, let e, let revision):
            buffer.writeInteger(UInt8(1))
            buffer.writeInteger(pile.raw)
            buffer.writeInteger(revision)
            writeString(e.node, to: &buffer)
            buffer.writeInteger(e.incarnation.bitPattern)
            buffer.writeInteger(e.since.bitPattern)
            writeString(e.address, to: &buffer)
            writeString(e.lane, to: &buffer)
            buffer.writeInteger(e.connection)
        case .delete(let pile, let revision):
            buffer.writeInteger(UInt8(2))
            buffer.writeInteger(pile.raw)
            buffer.writeInteger(revision)
        }
    }

    private static func readChange(_ b: inout ByteBuffer) -> Change? {
        guard let kind = b.readInteger(as: UInt8.self), let raw = b.readInteger(as: UInt64.self),
            let revision = b.readInteger(as: UInt64.self)
        else { return nil }
        let pile = PileID(raw: raw)
        switch kind {
        case 1:
            guard let node = readString(&b), let incarnation = b.readInteger(as: UInt64.self),
                let since = b.readInteger(as: UInt64.self), let address = readString(&b), let lane = readString(&b),
                let connection = b.readInteger(as: UInt64.self)
            else { return nil }
            let entry = ClusterPileEntry(
                node: node, incarnation: Double(bitPattern: incarnation), since: Double(bitPattern: since),
                address: address, lane: lane, connection: connection)
            return .put(pile, entry, revision: revision)
        case 2:
            return .delete(pile, revision: revision)
        default:
            return nil
        }
    }

    private static func writeString(_ text: String, to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt16(truncatingIfNeeded: text.utf8.count))
        buffer.writeString(text)
    }

    private static func readString(_ b: inout ByteBuffer) -> String? {
        guard let length = b.readInteger(as: UInt16.self) else { return nil }
        return b.readString(length: Int(length))
    }
}

/// The revision rules that let a node apply directory changes from many origins in whatever
/// order they arrive, and the bucket's own watch too: a key's revisions only grow (they are the
/// stream's sequence numbers), so a change older than what the mirror holds for the pile is
/// stale. A delete leaves a tombstone with its revision, so a put it deleted that arrives after it
/// (from another origin: the cleaner deletes a lost node's entries) does not come back.
struct ClusterDirectoryMirror: Sendable {
    struct Tombstone: Sendable, Equatable {
        var revision: UInt64
        /// Monotonic seconds when it was laid, for `prune`.
        var at: Double
    }

    var held: [PileID: ClusterPileDirectory.Held] = [:]
    var tombstones: [PileID: Tombstone] = [:]

    /// Applies `change`; returns the entry when a put took effect (for the callbacks that follow
    /// a pile moving to another node).
    mutating func apply(_ change: ClusterDirectoryChanges.Change, now: Double) -> ClusterPileDirectory.Held? {
        switch change {
        case .put(let pile, let entry, let revision):
            if let current = held[pile], current.revision >= revision { return nil }
            if let tomb = tombstones[pile], tomb.revision >= revision { return nil }
            let new = ClusterPileDirectory.Held(pile: pile, entry: entry, revision: revision)
            held[pile] = new
            return new
        case .delete(let pile, let revision):
            if let current = held[pile], current.revision < revision { held[pile] = nil }
            if (tombstones[pile]?.revision ?? 0) < revision { tombstones[pile] = Tombstone(revision: revision, at: now) }
            return nil
        }
    }

    /// Drops tombstones laid before `before`: a put older than its delete arrives within
    /// milliseconds of it, and a reload starts from the bucket anyway.
    mutating func prune(before: Double) {
        guard !tombstones.isEmpty else { return }
        tombstones = tombstones.filter { $0.value.at >= before }
    }
}
