import NIOConcurrencyHelpers
import NIOCore

/// Login timeouts and liveness for every connection of one event loop, checked by one repeated
/// task instead of a timer per connection; it also closes them all at shutdown, so the listener
/// needs no `ServerQuiescingHelper` (which keeps a set entry and a close callback per connection).
///
/// At a million connections, a per-connection idle timer costs memory (a handler, its context
/// and a scheduled task each) and CPU (re-arming on reads). Here a connection is an entry in a
/// loop-confined dictionary and a read just stores a deadline.
final class LivenessSweeper {
    private var sessions: [UInt64: PileSessionHandler] = [:]
    private let interval: TimeAmount
    private var scheduled = false
    private let eventLoop: any EventLoop

    init(eventLoop: any EventLoop, interval: TimeAmount) {
        self.eventLoop = eventLoop
        self.interval = interval
    }

    func add(_ id: UInt64, _ handler: PileSessionHandler) {
        sessions[id] = handler
        if !scheduled { scheduleNext() }
    }

    func remove(_ id: UInt64) {
        sessions[id] = nil
    }

    /// Re-arms itself while there are connections; stops when the loop has none.
    private func scheduleNext() {
        scheduled = true
        eventLoop.assumeIsolated().scheduleTask(in: interval) { [self] in
            sweep()
            if sessions.isEmpty { scheduled = false } else { scheduleNext() }
        }
    }

    /// Closes every connection of this loop (shutdown), including those that never logged in.
    func closeAll(reason: OfflineReason) {
        // Closing removes the connection from `sessions`: iterate over a copy.
        for handler in Array(sessions.values) { handler.close(reason: reason) }
    }

    private func sweep() {
        let now = NIODeadline.now()
        var expired: [PileSessionHandler] = []
        for handler in sessions.values where handler.isExpired(now: now) { expired.append(handler) }
        for handler in expired { handler.expire() }
    }

    /// One sweeper per event loop, created on first use.
    final class Registry: Sendable {
        private let sweepers = NIOLockedValueBox<[ObjectIdentifier: NIOLoopBound<LivenessSweeper>]>([:])
        let interval: TimeAmount

        init(loginTimeout: Double, livenessTimeout: Double) {
            // Fine enough for the shortest timeout, never busier than every 10 ms, at most 1 s.
            let seconds = max(0.01, min(1, min(loginTimeout, livenessTimeout) / 4))
            interval = TimeAmount.fromSeconds(seconds)
        }

        /// Closes every connection on every loop (shutdown). A connection that becomes active
        /// afterwards closes by itself: the gateway is shutting down by then.
        func closeAll(reason: OfflineReason) {
            for bound in sweepers.withLockedValue({ Array($0.values) }) {
                bound.eventLoop.execute { bound.value.closeAll(reason: reason) }
            }
        }

        func sweeper(for loop: any EventLoop) -> LivenessSweeper {
            let key = ObjectIdentifier(loop)
            if let s = sweepers.withLockedValue({ $0[key] }) { return s.value }
            let bound = NIOLoopBound(LivenessSweeper(eventLoop: loop, interval: interval), eventLoop: loop)
            return sweepers.withLockedValue { map in
                if let existing = map[key] { return existing.value }
                map[key] = bound
                return bound.value
            }
        }
    }
}
