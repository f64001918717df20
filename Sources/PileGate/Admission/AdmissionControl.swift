import Atomics
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Global protection of the gateway and the platform behind it: connection caps (total, per
/// source address, still logging in), flapping bans by address and by pile id, and the pace of
/// accepts and logins, so a reconnect storm of every pile at once is admitted steadily.
///
/// Consulted once per connection and once per login — never per frame.
public final class AdmissionControl: Sendable {
    /// The connection caps and paces in force; `apply` replaces them on a reload.
    private let settings: NIOLockedValueBox<GatewayConfiguration>
    var config: GatewayConfiguration { settings.withLockedValue { $0 } }
    let counters: GatewayCounters
    let addressFlaps: FlapDetector
    let pileFlaps: FlapDetector
    private let perAddress = NIOLockedValueBox<[String: Int]>([:])
    private let acceptBucket: NIOLockedValueBox<TokenBucket>
    private let loginBucket: NIOLockedValueBox<TokenBucket>
    private let episodeLog: EpisodeLogger
    /// Told of every pile ban this node decides or lifts (cluster mode shares them).
    private let pileBanHooks = NIOLockedValueBox<[@Sendable (PileBanChange) -> Void]>([])

    init(config: GatewayConfiguration, counters: GatewayCounters, logger: Logger) {
        self.settings = NIOLockedValueBox(config)
        self.counters = counters
        let window = TimeAmount.fromSeconds(config.flapWindow)
        let ban = TimeAmount.fromSeconds(config.flapBanDuration)
        addressFlaps = FlapDetector(maxConnects: config.flapMaxConnectsPerAddress, window: window, banDuration: ban)
        pileFlaps = FlapDetector(maxConnects: config.flapMaxConnects, window: window, banDuration: ban)
        let now = NIODeadline.now()
        acceptBucket = NIOLockedValueBox(
            TokenBucket(rate: config.acceptRatePerSecond, burst: max(config.acceptRatePerSecond, 1), now: now))
        loginBucket = NIOLockedValueBox(
            TokenBucket(rate: config.loginRatePerSecond, burst: max(config.loginRatePerSecond, 1), now: now))
        episodeLog = EpisodeLogger(logger: logger, interval: .seconds(10))
    }

    /// Pile connections allowed by the file limit (see `FileLimit`); unlimited until the
    /// gateway has read the limit at start.
    let fileLimitCap = ManagedAtomic(Int.max)

    /// Decides whether a new connection from `host` may stay. On success it is counted as open
    /// and pending login until `loggedIn`/`released`.
    func admit(host: String) -> AdmissionRefusal? {
        // Connections from loopback/test tools are still counted for flapping: a pile behind a
        // concentrator shares its address, so the address limit is generous by default.
        var refusal: AdmissionRefusal?
        let config = self.config
        let open = counters.connections.load(ordering: .relaxed)
        if open >= config.maxConnections {
            refusal = .maxConnections
        } else if open >= fileLimitCap.load(ordering: .relaxed) {
            refusal = .fileLimit
        } else if counters.pendingLogins.load(ordering: .relaxed) >= config.maxPendingLogins {
            refusal = .maxPendingLogins
        } else {
            switch addressFlaps.record(host) {
            case .allowed: break
            case .newlyBanned:
                counters.flapBans.wrappingIncrement(ordering: .relaxed)
                episodeLog.log(.warning, "source address banned for flapping", key: "flap-address:\(host)", metadata: ["address": "\(host)"])
                refusal = .addressBanned
            case .banned: refusal = .addressBanned
            }
        }
        if refusal == nil {
            let ok = perAddress.withLockedValue { map -> Bool in
                let n = map[host, default: 0]
                guard n < config.maxConnectionsPerAddress else { return false }
                map[host] = n + 1
                return true
            }
            if !ok { refusal = .maxConnectionsPerAddress }
        }
        if let refusal {
            counters.refused[refusal]?.wrappingIncrement(ordering: .relaxed)
            if refusal == .fileLimit {
                episodeLog.log(
                    .warning, "pile connections refused: file descriptors are running out", key: "refused:file_limit",
                    metadata: [
                        "reason": "file_limit", "pile_connection_cap": "\(fileLimitCap.load(ordering: .relaxed))",
                        "reserve": "\(config.fileDescriptorReserve)",
                    ])
            } else {
                episodeLog.log(.notice, "connections refused at admission", key: "refused:\(refusal.rawValue)", metadata: ["reason": "\(refusal.rawValue)"])
            }
            return refusal
        }
        counters.accepted.wrappingIncrement(ordering: .relaxed)
        counters.connections.wrappingIncrement(ordering: .relaxed)
        counters.pendingLogins.wrappingIncrement(ordering: .relaxed)
        return nil
    }

    /// The pile behind a pending connection logged in.
    func loggedIn() {
        counters.pendingLogins.wrappingDecrement(ordering: .relaxed)
    }

    /// An admitted connection ended.
    func released(host: String, wasPending: Bool) {
        counters.connections.wrappingDecrement(ordering: .relaxed)
        if wasPending { counters.pendingLogins.wrappingDecrement(ordering: .relaxed) }
        perAddress.withLockedValue { map in
            let n = map[host, default: 1] - 1
            map[host] = n > 0 ? n : nil
        }
    }

    /// Records a login attempt by pile id; false when the pile id is banned for flapping.
    func pileMayLogin(_ pile: String) -> Bool {
        switch pileFlaps.record(pile) {
        case .allowed: return true
        case .newlyBanned:
            counters.flapBans.wrappingIncrement(ordering: .relaxed)
            episodeLog.log(.warning, "pile banned for flapping", key: "flap-pile:\(pile)", metadata: ["pile": "\(pile)"])
            if let ban = pileFlaps.ban(pile) {
                let change = PileBanChange.banned(
                    pile: pile, until: Date().addingTimeInterval(Double(ban.remaining.nanoseconds) / 1e9), since: ban.since,
                    connects: ban.connects)
                for hook in pileBanHooks.withLockedValue({ $0 }) { hook(change) }
            }
            return false
        case .banned: return false
        }
    }

    /// Calls `hook` on every pile ban this node decides (from the login path: it must not block)
    /// and every pile ban an operator lifts here; not for bans applied with `imposePileBan`.
    public func onPileBanChange(_ hook: @escaping @Sendable (PileBanChange) -> Void) {
        pileBanHooks.withLockedValue { $0.append(hook) }
    }

    func reportPileBanChange(_ change: PileBanChange) {
        for hook in pileBanHooks.withLockedValue({ $0 }) { hook(change) }
    }

    /// Applies a pile ban decided elsewhere (another node of the cluster), without reporting it.
    public func imposePileBan(pile: String, until: Date, since: Date, connects: Int) {
        let remaining = until.timeIntervalSinceNow
        guard remaining > 0 else { return }
        pileFlaps.impose(pile, until: .now() + .fromSeconds(remaining), since: since, connects: connects)
    }

    /// Lifts a pile ban lifted elsewhere, without reporting it.
    public func liftPileBan(pile: String) {
        _ = pileFlaps.lift(pile)
    }

    /// Takes a login token; returns how long to wait before processing the login (zero when
    /// within the pace).
    func loginDelay() -> TimeAmount {
        loginBucket.withLockedValue { b in
            _ = b.take(1, now: .now())
            return b.delay()
        }
    }

    /// Takes an accept token; returns how long the listener should pause before accepting more.
    func acceptDelay(count: Int) -> TimeAmount {
        acceptBucket.withLockedValue { b in
            _ = b.take(Double(count), now: .now())
            return b.delay()
        }
    }

    /// A reloaded configuration: the caps (`maxConnections`, `maxConnectionsPerAddress`,
    /// `maxPendingLogins`) apply from the next connection; a changed accept or login rate starts
    /// a fresh bucket at the new rate. Flap settings need a restart (bans in force are kept).
    func apply(_ new: GatewayConfiguration) {
        let old = settings.withLockedValue { old in
            defer { old = new }
            return old
        }
        let now = NIODeadline.now()
        if old.acceptRatePerSecond != new.acceptRatePerSecond {
            acceptBucket.withLockedValue {
                $0 = TokenBucket(rate: new.acceptRatePerSecond, burst: max(new.acceptRatePerSecond, 1), now: now)
            }
        }
        if old.loginRatePerSecond != new.loginRatePerSecond {
            loginBucket.withLockedValue {
                $0 = TokenBucket(rate: new.loginRatePerSecond, burst: max(new.loginRatePerSecond, 1), now: now)
            }
        }
    }

    var bannedAddresses: Int { addressFlaps.bannedCount }
    var bannedPiles: Int { pileFlaps.bannedCount }
}
