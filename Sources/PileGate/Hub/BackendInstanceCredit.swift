import DequeModule
import NIOCore

/// A backend instance's credit, apart from any I/O or lock: at most `maxInFlight` events are
/// outstanding (ready to write or written and not acked); more wait in a queue of at most
/// `queueLimit`, and an ack promotes the oldest waiting. The instance holds one under its lock.
///
/// Generic over the event (`Item`, keyed by its `id`) so it is unit-tested event by event without
/// sockets (issue 10); `BackendInstance` uses it with its pending events keyed by event id.
struct BackendInstanceCredit<Item: Identifiable> {
    struct InFlight {
        var item: Item
        var sentAt: NIODeadline
    }

    enum EnqueueResult: Equatable {
        /// Ready to write now.
        case sent
        /// Waiting for credit.
        case queued
        /// The waiting queue is full: dropped.
        case overflow
    }

    let maxInFlight: Int
    private(set) var ready: Deque<Item> = []
    private(set) var waiting: Deque<Item> = []
    private(set) var inFlight: [Item.ID: InFlight] = [:]

    init(maxInFlight: Int) {
        self.maxInFlight = maxInFlight
    }

    private var hasCredit: Bool { inFlight.count + ready.count < maxInFlight }

    /// Adds an event: ready when credit allows, else waiting (bounded by `queueLimit`).
    mutating func enqueue(_ item: Item, queueLimit: Int) -> EnqueueResult {
        if hasCredit {
            ready.append(item)
            return .sent
        }
        guard waiting.count < queueLimit else { return .overflow }
        waiting.append(item)
        return .queued
    }

    /// Takes what is ready to write, marking it in flight since `now`.
    mutating func takeReady(now: NIODeadline) -> [Item] {
        let out = Array(ready)
        ready.removeAll()
        for item in out { inFlight[item.id] = InFlight(item: item, sentAt: now) }
        return out
    }

    /// An ack: frees its credit and promotes waiting events. Returns the acked event (nil when
    /// it was not in flight here) and whether anything became ready.
    mutating func ack(_ id: Item.ID) -> (InFlight?, promoted: Bool) {
        guard let done = inFlight.removeValue(forKey: id) else { return (nil, false) }
        var promoted = false
        while hasCredit, let next = waiting.popFirst() {
            ready.append(next)
            promoted = true
        }
        return (done, promoted)
    }

    /// In-flight events sent more than `timeout` before `now`, oldest first.
    func expired(timeout: TimeAmount, now: NIODeadline) -> [InFlight] {
        inFlight.values.filter { now - $0.sentAt > timeout }.sorted { $0.sentAt < $1.sentAt }
    }

    /// Everything not acked (in flight by send time, then ready, then waiting), removed.
    mutating func takeAll() -> [Item] {
        let out = inFlight.values.sorted { $0.sentAt < $1.sentAt }.map(\.item) + Array(ready) + Array(waiting)
        inFlight = [:]
        ready = []
        waiting = []
        return out
    }

    /// The waiting queue, removed (an ejected instance's queue goes elsewhere).
    mutating func takeWaiting() -> [Item] {
        let out = Array(waiting)
        waiting = []
        return out
    }
}

extension BackendInstanceCredit: Sendable where Item: Sendable, Item.ID: Sendable {}
extension BackendInstanceCredit.InFlight: Sendable where Item: Sendable {}
