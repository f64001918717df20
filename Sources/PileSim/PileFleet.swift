import NIOCore
import NIOPosix
import YKC

/// How a fleet of simulated piles is built and started.
public struct PileFleetConfig: Sendable {
    /// The gateways' pile ports (one gateway, or the nodes of a cluster); never empty in a
    /// fleet. Each pile connects to one of them, chosen by `assignment`.
    public var targets: [SocketAddress]
    /// How piles are spread over `targets`.
    public var assignment: GatewayAssignment = .roundRobin
    /// Reconnects go to a random other gateway of `targets` (`SimulatedPileConfig.failoverTargets`:
    /// the cluster behind a load balancer); false: a pile always reconnects to its own gateway.
    public var failover = false
    /// The run index of this fleet's first pile: a run split over worker processes gives each
    /// worker a share of consecutive piles, and the run index (not the share's own) picks the
    /// gateway, the source address and the charging piles, so the split changes none of them.
    public var runIndexOffset: Int = 0
    public var pileCount: Int
    /// Pile ids are `firstPileID`, `firstPileID + 1`, … as 14 decimal digits.
    public var firstPileID: UInt64 = 32_010_600_000_001
    /// Per-pile settings; `pileID`, `sourceAddress` and `counters` are filled in per pile.
    /// Defaults to firmware timings with per-pile diagnostics off (small piles).
    public var template: SimulatedPileConfig
    /// Spread connections over this many local addresses `sourceAddressPrefix` + 1…k
    /// (127.0.0.1…127.0.0.k), each with its own ephemeral port range. 0 = don't bind.
    public var sourceAddressCount: Int = 1
    public var sourceAddressPrefix: String = "127.0.0."
    /// New connections per second; nil starts all piles at once (a reconnect storm).
    public var connectRate: Double? = 1000
    /// The fraction (0…1) of the run's piles that charge by themselves with `chargingCycle`
    /// (`ChargingCycle.isCharging` picks them by run index); 0 = none.
    public var chargingFraction: Double = 0
    public var chargingCycle = ChargingCycle(sessionLength: .seconds(60), pause: .seconds(10))

    /// The single gateway, or the first of several.
    public var target: SocketAddress {
        get { targets[0] }
        set { targets = [newValue] }
    }

    public init(target: SocketAddress, pileCount: Int, gunCount: Int = 2) {
        self.init(targets: [target], pileCount: pileCount, gunCount: gunCount)
    }

    /// A fleet spread over several gateways (pass at least one).
    public init(targets: [SocketAddress], pileCount: Int, gunCount: Int = 2) {
        self.targets = targets
        self.pileCount = max(0, pileCount)
        var t = SimulatedPileConfig(pileID: PileID(raw: 0), gunCount: gunCount)
        t.recordFrames = 0
        t.detailedStats = false
        self.template = t
    }
}

/// Many simulated piles on a shared event-loop group, with aggregate counters: the load driver
/// behind `pilegate simulate` and the gateway's scale tests.
///
/// Piles are spread round-robin over the group's loops and over `sourceAddressCount` source
/// addresses, and over the gateways by `assignment`; each is a handful of small objects on its loop, so ~19,000 fit in one process.
public final class PileFleet: Sendable {
    public let config: PileFleetConfig
    public let counters: SimulatorCounters
    public let group: any EventLoopGroup
    /// All piles, in pile-id order.
    public let piles: [SimulatedPile]
    private let ownsGroup: Bool

    /// Builds (but does not start) the fleet. Without a group, one is created with a thread per core
    /// and shut down by `stop()`.
    public init(config: PileFleetConfig, group: (any EventLoopGroup)? = nil) throws {
        self.config = config
        let counters = SimulatorCounters()
        self.counters = counters
        if let group {
            self.group = group
            self.ownsGroup = false
        } else {
            self.group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
            self.ownsGroup = true
        }
        guard !config.targets.isEmpty else { throw PileFleetError.noGateway }
        var sources: [SocketAddress] = []
        for i in 0..<max(0, config.sourceAddressCount) {
            sources.append(try SocketAddress(ipAddress: config.sourceAddressPrefix + String(i + 1), port: 0))
        }
        // One timer wheel per loop, shared by its piles (`PileTimerWheel`: timers must not starve I/O).
        var wheels: [ObjectIdentifier: PileTimerWheel] = [:]
        for loop in self.group.makeIterator() { wheels[ObjectIdentifier(loop)] = PileTimerWheel(eventLoop: loop) }
        var piles: [SimulatedPile] = []
        piles.reserveCapacity(config.pileCount)
        for i in 0..<config.pileCount {
            var c = config.template
            c.pileID = try Self.pileID(config.firstPileID, offset: i)
            c.counters = counters
            if config.failover && config.targets.count > 1 { c.failoverTargets = config.targets }
            let runIndex = config.runIndexOffset + i
            c.sourceAddress = sources.isEmpty ? nil : sources[runIndex % sources.count]
            if ChargingCycle.isCharging(runIndex: runIndex, fraction: config.chargingFraction) {
                c.chargingCycle = config.chargingCycle
            }
            let gateway = config.assignment.gatewayIndex(
                runIndex: runIndex, pileID: config.firstPileID + UInt64(i), count: config.targets.count)
            let loop = self.group.next()
            piles.append(
                SimulatedPile(target: config.targets[gateway], config: c, eventLoop: loop, timers: wheels[ObjectIdentifier(loop)]))
        }
        self.piles = piles
    }

    /// The pile id `first + offset` as 14 decimal digits.
    public static func pileID(_ first: UInt64, offset: Int) throws -> PileID {
        let value = first + UInt64(offset)
        let text = String(value)
        guard let id = PileID(input: text) else { throw PileFleetError.pileIDOutOfRange(value) }
        return id
    }

    /// Starts the piles at `connectRate` per second (or all at once) and returns when the last
    /// pile's start is due; they keep connecting and logging in in the background.
    ///
    /// Each pile's start is a timer on its loop's wheel (`PileTimerWheel`), due at its place in
    /// the schedule: a loop that falls behind starts its piles late, rather than queueing
    /// connects ahead of the replies and connect completions waiting on its sockets (NIO runs
    /// queued tasks before it polls for I/O).
    public func start() async {
        guard let rate = config.connectRate, rate > 0 else {
            for pile in piles { pile.start() }
            return
        }
        var byLoop: [ObjectIdentifier: (loop: any EventLoop, starts: [(NIOLoopBoundBox<PileCore>, TimeAmount)])] = [:]
        for (i, pile) in piles.enumerated() {
            let delay = TimeAmount.nanoseconds(Int64(Double(i) / rate * 1e9))
            byLoop[ObjectIdentifier(pile.eventLoop), default: (pile.eventLoop, [])].starts.append((pile.core, delay))
        }
        for (_, entry) in byLoop {
            let starts = entry.starts
            entry.loop.execute {
                for (core, delay) in starts {
                    core.value.timers.schedule(in: delay) { core.value.start() }
                }
            }
        }
        let last = Double(max(0, piles.count - 1)) / rate
        try? await Task.sleep(for: .milliseconds(Int64(last * 1000)))
    }

    /// Queues a simulated bill on a random logged-in pile (skipped if the pile is offline).
    public func uploadRandomBill() {
        guard let pile = piles.randomElement() else { return }
        pile.withCore { core in
            guard core.phase == .loggedIn else { return }
            core.enqueueSimulatedBill()
        }
    }

    /// Tops up every logged-in pile's closed-loop bills (`billsInFlight`): after
    /// `BillLoadControl.start()`, which the piles otherwise notice only at their next ack or login.
    public func refillBills() {
        for pile in piles { pile.withCore { $0.refillBills() } }
    }

    /// Counts of piles per phase and per last close reason (e.g. "connect failed: …"), gathered
    /// from every pile's loop: the "why" behind the counters, for a load run's final summary.
    public func breakdown() async -> (phases: [PilePhase: Int], lastCloseReasons: [String: Int]) {
        var phases: [PilePhase: Int] = [:]
        var reasons: [String: Int] = [:]
        for pile in piles {
            let (phase, reason) = await pile.phaseAndLastCloseReason()
            phases[phase, default: 0] += 1
            if let reason { reasons["\(reason)", default: 0] += 1 }
        }
        return (phases, reasons)
    }

    /// Stops every pile, waits for their connections to close, and shuts down an owned group.
    public func stop() async {
        await withTaskGroup(of: Void.self) { tasks in
            for pile in piles { tasks.addTask { await pile.stop() } }
        }
        if ownsGroup { try? await group.shutdownGracefully() }
    }
}

public enum PileFleetError: Error, Sendable, CustomStringConvertible {
    case pileIDOutOfRange(UInt64)
    case noGateway

    public var description: String {
        switch self {
        case .pileIDOutOfRange(let v): "pile id \(v) does not fit 14 digits"
        case .noGateway: "a fleet needs at least one gateway address"
        }
    }
}
