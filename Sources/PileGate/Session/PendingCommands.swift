import DequeModule
import NIOCore
import YKC

/// Commands sent to one pile that wait for its reply: bounded, matched in constant time, each with
/// a deadline. A value without I/O; the session handler keeps one, fulfils the tokens it hands
/// back, and arms one timer for `earliestDeadline`.
///
/// A reply matches by reply code and the command's sequence bytes; piles that do not echo the
/// sequence are matched by reply code and gun, oldest first (BACKEND-PROTOCOL, commands). Both are
/// hash lookups: the list used to be searched linearly, and 100,000 waiting commands stalled the
/// pile's event loop (issue 14.6). `limit` caps how many wait at once; when the last one is gone the
/// tables are dropped, so a burst's memory is given back.
struct PendingCommands<Token> {
    struct Command {
        let id: UInt64
        let replyCode: UInt8
        let sequence: YKCSequence
        let gun: UInt8?
        let deadline: NIODeadline
        let token: Token
    }

    private struct SequenceKey: Hashable {
        var code: UInt8
        var sequence: YKCSequence
    }

    /// The most that may wait at once.
    let limit: Int
    private var commands: [UInt64: Command] = [:]
    private var bySequence: [SequenceKey: UInt64] = [:]
    /// Per (reply code, gun) the waiting ids, oldest first; gun `Self.anyGun` for commands without
    /// one (they match a reply for any gun). Ids of commands already gone are skipped lazily.
    private var byCodeAndGun: [UInt16: Deque<UInt64>] = [:]
    private var lastId: UInt64 = 0
    private static var anyGun: UInt8 { 0xFF }

    init(limit: Int) {
        self.limit = limit
    }

    var count: Int { commands.count }
    var isFull: Bool { commands.count >= limit }

    /// Adds a command; nil (and nothing added) when `limit` commands already wait.
    mutating func add(replyCode: UInt8, sequence: YKCSequence, gun: Int?, deadline: NIODeadline, token: Token) -> UInt64? {
        guard !isFull else { return nil }
        lastId += 1
        let id = lastId
        let gunByte = gun.flatMap { (0..<Int(Self.anyGun)).contains($0) ? UInt8($0) : nil }
        commands[id] = Command(id: id, replyCode: replyCode, sequence: sequence, gun: gunByte, deadline: deadline, token: token)
        bySequence[SequenceKey(code: replyCode, sequence: sequence)] = id
        let key = Self.key(replyCode, gunByte ?? Self.anyGun)
        byCodeAndGun[key, default: []].append(id)
        if let n = byCodeAndGun[key]?.count, n > 2 * limit + 8 {
            // Many answered out of order behind an old one: drop the ids already gone.
            byCodeAndGun[key]?.removeAll { commands[$0] == nil }
        }
        return id
    }

    /// The waiting command a pile frame answers, removed; nil if it answers none.
    mutating func match(code: UInt8, sequence: YKCSequence, gun: Int?) -> Token? {
        guard !commands.isEmpty else { return nil }
        if let id = bySequence[SequenceKey(code: code, sequence: sequence)], let c = commands[id] {
            return remove(c).token
        }
        // Oldest of: commands for this gun, commands for any gun.
        var best: UInt64?
        if let g = gun, (0..<Int(Self.anyGun)).contains(g), let id = oldest(Self.key(code, UInt8(g))) { best = id }
        if let id = oldest(Self.key(code, Self.anyGun)), best.map({ id < $0 }) ?? true { best = id }
        guard let id = best, let c = commands[id] else { return nil }
        return remove(c).token
    }

    /// Removes and returns the commands whose deadline has passed, oldest first.
    mutating func expire(now: NIODeadline) -> [Token] {
        let due = commands.values.filter { $0.deadline <= now }.sorted { $0.id < $1.id }
        return due.map { remove($0).token }
    }

    /// Removes every command (the pile went away), oldest first.
    mutating func removeAll() -> [Token] {
        let all = commands.values.sorted { $0.id < $1.id }.map(\.token)
        release()
        return all
    }

    /// When the next command times out, if any waits.
    var earliestDeadline: NIODeadline? {
        commands.values.lazy.map(\.deadline).min()
    }

    /// Slots held by the lookup tables (for tests: zero once nothing waits).
    var tableCapacity: Int { commands.capacity + bySequence.capacity + byCodeAndGun.capacity }

    private static func key(_ code: UInt8, _ gun: UInt8) -> UInt16 { UInt16(code) << 8 | UInt16(gun) }

    /// The oldest id still waiting in one (code, gun) queue, dropping gone ones from its front.
    private mutating func oldest(_ key: UInt16) -> UInt64? {
        while let id = byCodeAndGun[key]?.first {
            if commands[id] != nil { return id }
            byCodeAndGun[key]?.removeFirst()
        }
        return nil
    }

    private mutating func remove(_ c: Command) -> Command {
        commands[c.id] = nil
        let sk = SequenceKey(code: c.replyCode, sequence: c.sequence)
        if bySequence[sk] == c.id { bySequence[sk] = nil }
        let key = Self.key(c.replyCode, c.gun ?? Self.anyGun)
        if byCodeAndGun[key]?.first == c.id { byCodeAndGun[key]?.removeFirst() }
        if commands.isEmpty { release() }
        return c
    }

    /// Drops the tables themselves (not just their entries): their memory goes back.
    private mutating func release() {
        commands = [:]
        bySequence = [:]
        byCodeAndGun = [:]
    }
}
