import Atomics
import NIOCore

/// Aggregate counters shared by many simulated piles (a fleet, a load run).
///
/// Piles on different event loops update them concurrently, so they are atomics; each update is
/// one relaxed add, which keeps the per-frame path free of locks. Read them with `snapshot()`.
public final class SimulatorCounters: Sendable {
    public let connectAttempts = ManagedAtomic<Int>(0)
    /// Gauge: connections open now.
    public let connected = ManagedAtomic<Int>(0)
    public let connectFailures = ManagedAtomic<Int>(0)
    /// Gauge: piles logged in now.
    public let loggedIn = ManagedAtomic<Int>(0)
    public let loginsSent = ManagedAtomic<Int>(0)
    public let loginsAccepted = ManagedAtomic<Int>(0)
    public let loginsRejected = ManagedAtomic<Int>(0)
    public let loginTimeouts = ManagedAtomic<Int>(0)
    public let heartbeatsSent = ManagedAtomic<Int>(0)
    public let heartbeatsAcked = ManagedAtomic<Int>(0)
    public let heartbeatTimeouts = ManagedAtomic<Int>(0)
    /// Reconnects scheduled (after a drop, a failed connect or a failed login).
    public let reconnects = ManagedAtomic<Int>(0)
    /// Connections that ended, for any reason.
    public let closes = ManagedAtomic<Int>(0)
    /// 0x3B frames sent, retries included.
    public let billFramesSent = ManagedAtomic<Int>(0)
    /// Distinct bills queued for upload.
    public let billsQueued = ManagedAtomic<Int>(0)
    public let billsAcked = ManagedAtomic<Int>(0)
    public let billsAbandoned = ManagedAtomic<Int>(0)
    public let billingModelsReceived = ManagedAtomic<Int>(0)
    public let commandsAnswered = ManagedAtomic<Int>(0)
    public let framesSent = ManagedAtomic<Int>(0)
    public let framesReceived = ManagedAtomic<Int>(0)
    public let parseErrors = ManagedAtomic<Int>(0)
    /// Time from 0x01 sent to 0x02 received.
    public let loginLatency = LatencyHistogram()
    /// Time from a bill's first 0x3B send to its 0x40 (across reconnects and re-sends), with
    /// sub-millisecond buckets: the gateway's durable-ack latency as a pile sees it.
    public let billAckLatency = LatencyHistogram(boundsMicros: LatencyHistogram.fineBoundsMicros)

    public init() {}

    /// A plain copy of every counter.
    public func snapshot() -> Snapshot {
        Snapshot(
            connectAttempts: connectAttempts.load(ordering: .relaxed),
            connected: connected.load(ordering: .relaxed),
            connectFailures: connectFailures.load(ordering: .relaxed),
            loggedIn: loggedIn.load(ordering: .relaxed),
            loginsSent: loginsSent.load(ordering: .relaxed),
            loginsAccepted: loginsAccepted.load(ordering: .relaxed),
            loginsRejected: loginsRejected.load(ordering: .relaxed),
            loginTimeouts: loginTimeouts.load(ordering: .relaxed),
            heartbeatsSent: heartbeatsSent.load(ordering: .relaxed),
            heartbeatsAcked: heartbeatsAcked.load(ordering: .relaxed),
            heartbeatTimeouts: heartbeatTimeouts.load(ordering: .relaxed),
            reconnects: reconnects.load(ordering: .relaxed),
            closes: closes.load(ordering: .relaxed),
            billFramesSent: billFramesSent.load(ordering: .relaxed),
            billsQueued: billsQueued.load(ordering: .relaxed),
            billsAcked: billsAcked.load(ordering: .relaxed),
            billsAbandoned: billsAbandoned.load(ordering: .relaxed),
            billingModelsReceived: billingModelsReceived.load(ordering: .relaxed),
            commandsAnswered: commandsAnswered.load(ordering: .relaxed),
            framesSent: framesSent.load(ordering: .relaxed),
            framesReceived: framesReceived.load(ordering: .relaxed),
            parseErrors: parseErrors.load(ordering: .relaxed),
            loginLatency: loginLatency.snapshot(),
            billAckLatency: billAckLatency.snapshot())
    }

    /// Codable so that a worker process can hand its figures to the process that started it, which
    /// adds them up with `merge` (gauges too: each worker's piles are its own).
    public struct Snapshot: Sendable, Hashable, Codable {
        public var connectAttempts: Int
        public var connected: Int
        public var connectFailures: Int
        public var loggedIn: Int
        public var loginsSent: Int
        public var loginsAccepted: Int
        public var loginsRejected: Int
        public var loginTimeouts: Int
        public var heartbeatsSent: Int
        public var heartbeatsAcked: Int
        public var heartbeatTimeouts: Int
        public var reconnects: Int
        public var closes: Int
        public var billFramesSent: Int
        public var billsQueued: Int
        public var billsAcked: Int
        public var billsAbandoned: Int
        public var billingModelsReceived: Int
        public var commandsAnswered: Int
        public var framesSent: Int
        public var framesReceived: Int
        public var parseErrors: Int
        public var loginLatency: LatencyHistogram.Snapshot
        public var billAckLatency: LatencyHistogram.Snapshot

        /// Bills queued and neither acknowledged nor abandoned yet.
        public var billsPending: Int { max(0, billsQueued - billsAcked - billsAbandoned) }

        /// All zero, for adding snapshots up.
        public static let zero = Snapshot(
            connectAttempts: 0, connected: 0, connectFailures: 0, loggedIn: 0, loginsSent: 0, loginsAccepted: 0,
            loginsRejected: 0, loginTimeouts: 0, heartbeatsSent: 0, heartbeatsAcked: 0, heartbeatTimeouts: 0,
            reconnects: 0, closes: 0, billFramesSent: 0, billsQueued: 0, billsAcked: 0, billsAbandoned: 0,
            billingModelsReceived: 0, commandsAnswered: 0, framesSent: 0, framesReceived: 0, parseErrors: 0,
            loginLatency: LatencyHistogram().snapshot(),
            billAckLatency: LatencyHistogram(boundsMicros: LatencyHistogram.fineBoundsMicros).snapshot())

        /// Adds another fleet's snapshot to this one: counters and gauges are summed, histograms merged
        /// bucket by bucket (so percentiles stay true percentiles of all samples, never averages).
        public mutating func merge(_ other: Snapshot) throws {
            connectAttempts += other.connectAttempts
            connected += other.connected
            connectFailures += other.connectFailures
            loggedIn += other.loggedIn
            loginsSent += other.loginsSent
            loginsAccepted += other.loginsAccepted
            loginsRejected += other.loginsRejected
            loginTimeouts += other.loginTimeouts
            heartbeatsSent += other.heartbeatsSent
            heartbeatsAcked += other.heartbeatsAcked
            heartbeatTimeouts += other.heartbeatTimeouts
            reconnects += other.reconnects
            closes += other.closes
            billFramesSent += other.billFramesSent
            billsQueued += other.billsQueued
            billsAcked += other.billsAcked
            billsAbandoned += other.billsAbandoned
            billingModelsReceived += other.billingModelsReceived
            commandsAnswered += other.commandsAnswered
            framesSent += other.framesSent
            framesReceived += other.framesReceived
            parseErrors += other.parseErrors
            try loginLatency.merge(other.loginLatency)
            try billAckLatency.merge(other.billAckLatency)
        }

        /// The sum of `snapshots` (`zero` for none).
        public static func sum(_ snapshots: some Sequence<Snapshot>) throws -> Snapshot {
            var total = Snapshot.zero
            for s in snapshots { try total.merge(s) }
            return total
        }
    }
}

/// A fixed-bucket latency histogram with atomic buckets, so thousands of piles can record into
/// one without locking. Percentiles are reported as the upper bound of the bucket they fall in.
public final class LatencyHistogram: Sendable {
    /// Default bucket upper bounds in milliseconds; the last bucket is unbounded.
    public static let boundsMs: [Int] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
    /// Finer bounds in microseconds (0.1 ms steps at the low end) for latencies that should be a
    /// few milliseconds, e.g. a bill's 0x40 after an fsync.
    public static let fineBoundsMicros: [Int] = [
        100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1250, 1500, 1750, 2000, 2500, 3000, 3500, 4000, 5000,
        6000, 7000, 8000, 9000, 10000, 12500, 15000, 20000, 30000, 50000, 75000, 100000, 200000, 500000,
        1_000_000, 2_000_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000, 120_000_000, 300_000_000,
    ]

    /// Bucket upper bounds in microseconds.
    public let boundsMicros: [Int]
    private let buckets: [ManagedAtomic<Int>]
    private let count = ManagedAtomic<Int>(0)
    private let sumMicros = ManagedAtomic<Int>(0)
    private let maxMicros = ManagedAtomic<Int>(0)

    public convenience init() {
        self.init(boundsMicros: Self.boundsMs.map { $0 * 1000 })
    }

    /// A histogram with the given ascending bucket upper bounds (microseconds) plus an overflow bucket.
    public init(boundsMicros: [Int]) {
        self.boundsMicros = boundsMicros.sorted()
        buckets = (0...boundsMicros.count).map { _ in ManagedAtomic<Int>(0) }
    }

    public func record(_ amount: TimeAmount) {
        let micros = max(0, Int(amount.nanoseconds / 1000))
        var index = boundsMicros.count
        for (i, bound) in boundsMicros.enumerated() where micros <= bound {
            index = i
            break
        }
        buckets[index].wrappingIncrement(ordering: .relaxed)
        count.wrappingIncrement(ordering: .relaxed)
        sumMicros.wrappingIncrement(by: micros, ordering: .relaxed)
        var current = maxMicros.load(ordering: .relaxed)
        while micros > current {
            let (exchanged, original) = maxMicros.weakCompareExchange(
                expected: current, desired: micros, ordering: .relaxed)
            if exchanged { break }
            current = original
        }
    }

    public func snapshot() -> Snapshot {
        Snapshot(
            boundsMicros: boundsMicros,
            buckets: buckets.map { $0.load(ordering: .relaxed) },
            count: count.load(ordering: .relaxed),
            sumMicros: sumMicros.load(ordering: .relaxed),
            maxMicros: maxMicros.load(ordering: .relaxed))
    }

    public struct Snapshot: Sendable, Hashable, Codable {
        /// Bucket upper bounds in microseconds.
        public var boundsMicros: [Int]
        /// Counts per bucket, aligned with `boundsMicros` plus one overflow bucket.
        public var buckets: [Int]
        public var count: Int
        public var sumMicros: Int
        public var maxMicros: Int

        public var meanMs: Double { count == 0 ? 0 : Double(sumMicros) / Double(count) / 1000 }

        /// Adds another histogram's samples: bucket counts, count and sum added, the larger max kept.
        /// Both must have the same bounds (and bucket count), else `HistogramMismatch`.
        public mutating func merge(_ other: Snapshot) throws {
            guard other.boundsMicros == boundsMicros, other.buckets.count == buckets.count,
                buckets.count == boundsMicros.count + 1
            else { throw HistogramMismatch(ours: boundsMicros.count, theirs: other.boundsMicros.count) }
            for i in buckets.indices { buckets[i] += other.buckets[i] }
            count += other.count
            sumMicros += other.sumMicros
            maxMicros = max(maxMicros, other.maxMicros)
        }
        public var maxMs: Double { Double(maxMicros) / 1000 }

        /// The bucket upper bound (ms) below which `fraction` (0…1) of samples fall, capped at the
        /// maximum seen; nil when empty.
        public func percentileMs(_ fraction: Double) -> Double? {
            guard count > 0 else { return nil }
            let target = Int((Double(count) * min(max(fraction, 0), 1)).rounded(.up))
            var seen = 0
            for (i, n) in buckets.enumerated() {
                seen += n
                if seen >= max(target, 1) {
                    // Never report more than the largest sample seen.
                    return i < boundsMicros.count ? min(Double(boundsMicros[i]) / 1000, maxMs) : maxMs
                }
            }
            return maxMs
        }
    }
}
