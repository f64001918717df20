import NIOCore

/// A timer of a simulated pile (`PileTimerWheel.schedule`). Cancelling is O(1): the body is
/// dropped at once and the wheel discards the entry when it comes due.
final class PileTimer {
    fileprivate var body: (() -> Void)?

    fileprivate init(_ body: @escaping () -> Void) {
        self.body = body
    }

    /// Stops the timer; a timer that already ran or was cancelled stays as it is.
    func cancel() {
        body = nil
    }

    var isPending: Bool { body != nil }
}

/// All the timers of the piles on one event loop: heartbeats, login and billing-model retries,
/// reconnect back-off, bill re-sends, charging sessions and waiters.
///
/// Why not one NIO scheduled task per timer: NIO runs every task that is due before it polls
/// for I/O again, and keeps doing so while more become due (`SelectableEventLoop.runOneLoopTick`
/// loops until none is). A loop with 16,000 piles has thousands of timers due each second;
/// once it fell behind (two cores shared by six gateway nodes and six simulators in
/// `scripts/cluster-load.sh`), due timers arrived faster than it ran them, and it stopped
/// reading its sockets for tens of seconds: connects finished in the kernel but NIO's connect
/// timeouts fired first, heartbeat replies sat unread, and the reconnects fed the backlog
/// (docs/BENCHMARKS.md, "Cluster load"). Real piles have a CPU each; a simulator must not turn
/// its own backlog into a reconnect storm the gateway is then blamed for.
///
/// The wheel keeps its timers in one heap and holds one NIO task, armed for the earliest
/// deadline. When it fires it runs at most `batchLimit` due timers, then re-arms
/// `yieldDelay` later if more are due, so NIO goes back to `epoll_wait` between batches: a
/// loop that falls behind runs its timers late, as an overloaded pile would, and keeps
/// reading. Cancelling is O(1), where cancelling a NIO task is a linear search of the loop's
/// task heap.
///
/// Time is the loop's (`EventLoop.now`), so an `EmbeddedEventLoop` moves it in tests.
/// Confined to `eventLoop`: every method must be called on it (the type is `@unchecked
/// Sendable` only so that a fleet can hand one wheel to the piles of a loop).
final class PileTimerWheel: @unchecked Sendable {
    let eventLoop: any EventLoop
    let batchLimit: Int
    let yieldDelay: TimeAmount

    private struct Entry {
        var deadline: NIODeadline
        /// Insertion order: timers with the same deadline run in the order they were set.
        var order: UInt64
        var timer: PileTimer

        func runsBefore(_ other: Entry) -> Bool {
            deadline < other.deadline || (deadline == other.deadline && order < other.order)
        }
    }

    private var heap: [Entry] = []
    private var nextOrder: UInt64 = 0
    /// The NIO task that runs the next batch, and its deadline.
    private var armed: (deadline: NIODeadline, task: Scheduled<Void>)?
    private var firing = false
    /// Timers run so far (for tests).
    private(set) var timersRun = 0

    init(eventLoop: any EventLoop, batchLimit: Int = 128, yieldDelay: TimeAmount = .milliseconds(1)) {
        self.eventLoop = eventLoop
        self.batchLimit = max(1, batchLimit)
        self.yieldDelay = yieldDelay
    }

    /// Timers set and not yet run or discarded (cancelled ones count until they come due).
    var count: Int { heap.count }

    /// Runs `body` on the loop after `delay` (at the earliest).
    @discardableResult
    func schedule(in delay: TimeAmount, _ body: @escaping () -> Void) -> PileTimer {
        eventLoop.assertInEventLoop()
        let timer = PileTimer(body)
        let entry = Entry(deadline: eventLoop.now + delay, order: nextOrder, timer: timer)
        nextOrder &+= 1
        push(entry)
        if !firing { arm(at: entry.deadline) }
        return timer
    }

    /// Arms the NIO task for `deadline` unless it is already armed for that time or earlier.
    private func arm(at deadline: NIODeadline) {
        if let armed, armed.deadline <= deadline { return }
        armed?.task.cancel()
        let task = eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: deadline) { [self] in
            armed = nil
            fire()
        }
        armed = (deadline, task)
    }

    /// Runs the timers due when the batch starts, at most `batchLimit` of them; timers that come
    /// due meanwhile wait for the next batch, after NIO has polled for I/O.
    private func fire() {
        let now = eventLoop.now
        firing = true
        var ran = 0
        while let top = heap.first, top.deadline <= now {
            guard top.timer.isPending else {
                popTop()
                continue
            }
            if ran == batchLimit { break }
            popTop()
            let body = top.timer.body
            top.timer.body = nil
            ran += 1
            body?()
        }
        firing = false
        timersRun += ran
        // Cancelled timers at the top would only wake the loop for nothing.
        while let top = heap.first, !top.timer.isPending { popTop() }
        guard let next = heap.first else { return }
        // Timers due by the end of this batch wait `yieldDelay` from that end: a deadline already
        // past would run in the same round of tasks, before NIO polls for I/O.
        let end = eventLoop.now
        if next.deadline <= end {
            arm(at: end + yieldDelay)
        } else {
            arm(at: next.deadline)
        }
    }

    // MARK: the heap

    private func push(_ entry: Entry) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].runsBefore(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private func popTop() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { break }
            let right = left + 1
            var first = left
            if right < heap.count, heap[right].runsBefore(heap[left]) { first = right }
            guard heap[first].runsBefore(heap[parent]) else { break }
            heap.swapAt(first, parent)
            parent = first
        }
    }
}
