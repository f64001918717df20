import Atomics
import NIOCore
import NIOSSL
import YKC
import YKCCipher

/// How a simulated pile behaves. Defaults follow the firmware timings in docs/ykc/PROTOCOL-FACTS.md §5
/// (10 s heartbeat per gun, 10 s login wait, ~30 s login retry, 0x09 repeated until answered,
/// bills re-sent until 0x40), so a pile built with only a pile id acts like a real one.
/// Tests shorten the intervals; load runs turn the per-pile diagnostics off to save memory.
public struct SimulatedPileConfig: Sendable {
    // MARK: Identity (what goes into the 0x01 login)

    public var pileID: PileID
    /// Number of guns, 1…99. Each gun heartbeats on its own (docs/ykc/PROTOCOL-FACTS.md §5.2).
    public var gunCount: Int
    public var pileType: PileType = .dc
    /// Login version byte: 15 = V1.5, 16 = V1.6.
    public var protocolVersion: UInt8 = 16
    /// At most 8 ASCII bytes on the wire.
    public var firmwareVersion: String = "SIM1.0.0"
    public var networkType: NetworkType = .lan
    public var sim: BCDDigits = "00000000000000000000"
    public var carrier: Carrier = .other

    // MARK: Connection

    /// Local address to bind before connecting (e.g. 127.0.0.7, port 0), so a load run can spread
    /// its connections over several source addresses and escape the per-address port limit.
    public var sourceAddress: SocketAddress?
    public var connectTimeout: TimeAmount = .seconds(5)
    /// How long to wait for 0x02 before closing the socket (FW: 10 s).
    public var loginTimeout: TimeAmount = .seconds(10)
    /// Delay before reconnecting after a login timeout or rejection (FW: about 30 s). Jittered
    /// with `reconnect.jitter`.
    public var loginRetryDelay: TimeAmount = .seconds(30)
    /// Reconnection after the link drops or a connect fails.
    public var reconnect: ReconnectPolicy = .default
    /// Gateways behind a load balancer (the nodes of a cluster): when it has two or more, every
    /// reconnect goes to one of them other than the last one tried, picked at random, as a new
    /// connection through a load balancer lands on any healthy node. Empty: always the pile's
    /// own target.
    public var failoverTargets: [SocketAddress] = []
    /// Speak TLS with this client context (the gateway's `pileTLSPort`): it holds the CA to trust
    /// and, for mutual TLS, the pile's certificate. Nil: plain TCP.
    public var tls: NIOSSLContext?
    /// The name the server certificate must carry (nil: the certificate is checked against the CA
    /// only, not against a name — piles usually connect by address).
    public var tlsServerName: String?
    /// Encrypt every frame body with this 3DES key (flag 0x01) and decrypt encrypted frames from the
    /// platform, like a pile of a vendor that uses frame encryption; nil sends plain frames.
    public var frameCipher: FrameCipher?

    // MARK: Heartbeat

    public var heartbeatInterval: TimeAmount = .seconds(10)
    /// Delay from login to the first heartbeat. Zero sends the first one right after login.
    public var heartbeatInitialDelay: TimeAmount = .zero
    /// One heartbeat per gun per interval (FW), or only gun 1's.
    public var heartbeatScope: HeartbeatScope = .perGun
    /// The pile closes the link when more than this many heartbeats of one gun are unanswered (FW: 3).
    public var maxUnansweredHeartbeats: Int = 3

    // MARK: Sequence numbers

    /// One counter per gun, as FW keeps (pile-level frames use gun 1's), or one per connection.
    public var sequenceScope: SequenceScope = .perGun
    /// How the 16-bit counter is written (FW: little-endian; TNK's real pile: big-endian).
    public var sequenceByteOrder: Endianness = .little

    // MARK: Billing model and real-time data

    /// Send 0x09 right after login and repeat it until 0x0A arrives (FW behaviour).
    public var requestBillingModel: Bool = true
    public var billingModelRetryInterval: TimeAmount = .seconds(10)
    /// Unsolicited idle 0x13 per gun (SPEC: every 5 min); nil sends none.
    public var realtimeInterval: TimeAmount? = .minutes(5)
    /// Send one 0x13 per gun right after login (FW reports right after connecting).
    public var realtimeOnLogin: Bool = true
    /// 0x13 cadence while a gun is charging (SPEC: 15 s).
    public var chargingRealtimeInterval: TimeAmount = .seconds(15)
    /// Simulated charging power, for the energy in 0x13 and the bill.
    public var chargingPowerKW: Double = 60
    /// Stop a charging session by itself after this long (stop reason "SOC full") and bill it; nil never.
    public var chargingDuration: TimeAmount?
    /// Charge by itself, session after session, each ending with a bill; nil never starts a
    /// session on its own (`ChargingCycle`).
    public var chargingCycle: ChargingCycle?

    // MARK: Platform commands

    /// Answer platform commands (0x12, 0x34, 0x36, 0x42, …) the way a pile does, echoing the
    /// request's sequence bytes. Off: commands are only recorded.
    public var autoAnswerCommands: Bool = true
    /// Command codes never answered even when `autoAnswerCommands` is on (for timeout tests).
    public var ignoredCommandCodes: Set<UInt8> = []
    /// After answering 0x92 (reboot, "immediately"), drop the link and log in again like a rebooting pile.
    public var rebootOnCommand: Bool = false

    // MARK: Bills

    /// Re-send an unacknowledged 0x3B this often (SPEC §8.7: 30 s).
    public var billRetryInterval: TimeAmount = .seconds(30)
    /// Give up on a bill after this many sends of it (FW: more than 10 sends).
    public var billMaxSends: Int = 10
    /// Closed-loop bill load: keep this many simulated bills outstanding, queuing a new one as
    /// soon as one is acknowledged (and filling up at each login); 0 = off. `billLoad` switches it off.
    public var billsInFlight: Int = 0
    /// Shared switch for `billsInFlight` (a fleet passes one instance to all its piles); nil = always on.
    public var billLoad: BillLoadControl?
    /// Called on the pile's event loop for every bill the pile deletes on a 0x40 (each trade
    /// serial once per upload), with the time from its first send to the 0x40. Keep it cheap.
    public var onBillAcked: (@Sendable (_ pile: PileID, _ tradeSerial: TradeSerial, _ result: BillAckResult, _ latency: TimeAmount) -> Void)?

    // MARK: Observation

    /// Keep up to this many received frames for `waitForFrame` / `receivedFrames`; 0 keeps none.
    public var recordFrames: Int = 256
    /// Per-type frame counts and per-bill bookkeeping in the state snapshot. Load runs turn this
    /// off to keep a pile small.
    public var detailedStats: Bool = true
    /// Shared aggregate counters (a fleet passes one instance to all its piles).
    public var counters: SimulatorCounters?

    public init(pileID: PileID, gunCount: Int = 2) {
        self.pileID = pileID
        self.gunCount = max(1, min(gunCount, 99))
    }

    /// A configuration for tests: fast timers (0.2 s heartbeat, 1 s login wait, 0.2 s retries),
    /// no unsolicited 0x13, so a whole scenario runs in well under a second per step and the
    /// platform sees only the frames a test is about.
    public static func fast(pileID: PileID, gunCount: Int = 2) -> SimulatedPileConfig {
        var c = SimulatedPileConfig(pileID: pileID, gunCount: gunCount)
        c.heartbeatInterval = .milliseconds(200)
        c.loginTimeout = .seconds(1)
        c.loginRetryDelay = .milliseconds(200)
        c.billingModelRetryInterval = .milliseconds(200)
        c.chargingRealtimeInterval = .milliseconds(200)
        c.billRetryInterval = .milliseconds(200)
        c.realtimeInterval = nil
        c.realtimeOnLogin = false
        c.connectTimeout = .seconds(2)
        c.reconnect = ReconnectPolicy(
            enabled: true, initialDelay: .milliseconds(100), maxDelay: .milliseconds(500), multiplier: 2, jitter: 0)
        return c
    }
}

/// Which guns send heartbeats.
public enum HeartbeatScope: Sendable, Hashable {
    /// Every gun sends its own 0x03 each interval (FW, docs/ykc/PROTOCOL-FACTS.md §5.2).
    case perGun
    /// Only gun 1 heartbeats (older single-heartbeat piles).
    case firstGunOnly
}

/// Where pile-originated sequence numbers come from (docs/ykc/PROTOCOL-FACTS.md §1.2).
public enum SequenceScope: Sendable, Hashable {
    /// One counter per gun, reset on each connection (FW). Pile-level frames use gun 1's.
    case perGun
    /// One counter for the connection (SPEC's reading).
    case perConnection
}

/// When and how fast a pile reconnects. The delay doubles (by `multiplier`) after each failed
/// attempt up to `maxDelay`, is reset after a successful login, and is spread by ±`jitter`
/// (a fraction) so a fleet does not reconnect in lock-step.
public struct ReconnectPolicy: Sendable, Hashable {
    public var enabled: Bool
    public var initialDelay: TimeAmount
    public var maxDelay: TimeAmount
    public var multiplier: Double
    /// 0…1: the delay is multiplied by a random factor in [1 − jitter, 1 + jitter].
    public var jitter: Double

    public init(enabled: Bool, initialDelay: TimeAmount, maxDelay: TimeAmount, multiplier: Double, jitter: Double) {
        self.enabled = enabled
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.multiplier = max(1, multiplier)
        self.jitter = min(max(jitter, 0), 1)
    }

    public static let `default` = ReconnectPolicy(
        enabled: true, initialDelay: .seconds(1), maxDelay: .seconds(30), multiplier: 2, jitter: 0.2)
    /// Never reconnect: a closed link stays closed (for tests that count closes).
    public static let never = ReconnectPolicy(
        enabled: false, initialDelay: .seconds(1), maxDelay: .seconds(1), multiplier: 1, jitter: 0)

    /// The delay before attempt number `failures` (0 = first retry), jittered.
    func delay(afterFailures failures: Int) -> TimeAmount {
        var nanos = Double(initialDelay.nanoseconds)
        var i = 0
        while i < failures && nanos < Double(maxDelay.nanoseconds) {
            nanos *= multiplier
            i += 1
        }
        nanos = min(nanos, Double(maxDelay.nanoseconds))
        return Self.jittered(nanos, jitter)
    }

    static func jittered(_ nanos: Double, _ jitter: Double) -> TimeAmount {
        guard jitter > 0 else { return .nanoseconds(Int64(nanos)) }
        let factor = Double.random(in: (1 - jitter)...(1 + jitter))
        return .nanoseconds(Int64(max(0, nanos * factor)))
    }
}

/// An on/off switch shared by the piles of a closed-loop bill load (`billsInFlight`): when it is
/// off, acknowledged bills are no longer replaced, so the outstanding ones drain.
public final class BillLoadControl: Sendable {
    private let enabled: ManagedAtomic<Bool>

    /// `enabled: false` holds the load back until `start()` (a run whose bills begin later).
    public init(enabled: Bool = true) {
        self.enabled = ManagedAtomic(enabled)
    }

    public var isEnabled: Bool { enabled.load(ordering: .relaxed) }

    public func start() { enabled.store(true, ordering: .relaxed) }

    public func stop() { enabled.store(false, ordering: .relaxed) }
}
