import Atomics
import Foundation
import GRDB
import NIOConcurrencyHelpers
import YKC

/// The gateway's side of charging through a backend outage: it remembers what backends decided
/// on each card and VIN (`OfflineAuthorizationCache`), decides a start no backend answered
/// (`OfflineAuthorizationPolicy`, replaced live by a configuration reload), issues the trade
/// serial of an approved one, keeps what it issued (`OfflineAuthorizationLedger`) and counts
/// approvals and refusals by reason for `/metrics` and `/v1/stats`.
///
/// The hub does the I/O (`BackendHub+OfflineAuthorization.swift`): the pile's answer, and the
/// `offline_authorization` event through the outbox.
final class OfflineAuthorizer: Sendable {
    let cache: OfflineAuthorizationCache
    let ledger: OfflineAuthorizationLedger
    private let policyBox: NIOLockedValueBox<OfflineAuthorizationPolicy>
    private let counts = NIOLockedValueBox(Counts())
    /// The last four digits of issued trade serials; starts at random so that a restart within
    /// the same second does not repeat a serial.
    private let serialCounter = ManagedAtomic<Int>(Int.random(in: 0..<10_000))

    struct Counts: Sendable, Equatable {
        var approved: [String: Int] = [:]
        var refused: [String: Int] = [:]
    }

    init(database: DatabasePool, config: GatewayConfiguration, now: Date = Date()) throws {
        let policy = OfflineAuthorizationPolicy(config: config)
        policyBox = NIOLockedValueBox(policy)
        // Decisions older than the window are never used; a day at least, so that a reload that
        // widens the window soon after a restart still finds yesterday's approvals.
        cache = try OfflineAuthorizationCache(
            database: database, capacity: config.offlineAuthorizationCacheSize, maxAge: max(config.offlineAuthorizationWindow, 86_400), now: now)
        ledger = try OfflineAuthorizationLedger(database: database, now: now)
    }

    var policy: OfflineAuthorizationPolicy { policyBox.withLockedValue { $0 } }

    /// Takes the `offlineAuthorization*` settings of a reloaded configuration.
    func update(_ config: GatewayConfiguration) {
        let policy = OfflineAuthorizationPolicy(config: config)
        policyBox.withLockedValue { $0 = policy }
        cache.setCapacity(config.offlineAuthorizationCacheSize)
    }

    /// The credential and gun of a start request (0x31, 0xA1); nil for any other message.
    static func startRequest(_ message: YKCMessage) -> (credential: OfflineCredential?, gun: GunNumber)? {
        switch message {
        case .startRequest(let r): (OfflineCredential(startMethod: r.startMethod, card: r.cardNumber, vin: r.vin), r.gun)
        case .parallelStartRequest(let r): (OfflineCredential(startMethod: r.startMethod, card: r.cardNumber, vin: r.vin), r.gun)
        default: nil
        }
    }

    /// Remembers a backend's answer to a start request (only while the policy is on: with it
    /// off, no card number is stored).
    func backendAnswered(_ request: YKCMessage, with answer: YKCMessage, pile: PileID, at now: Date = Date()) {
        guard policy.mode != .off, let (credential, _) = Self.startRequest(request), let credential else { return }
        let decision: OfflineAuthorizationCache.Decision
        switch answer {
        case .startRequestReply(let r):
            decision = Self.decision(r.authResult, r.balance, r.logicalCardNumber, pile: pile, at: now)
        case .parallelStartRequestReply(let r):
            decision = Self.decision(r.authResult, r.balance, r.logicalCardNumber, pile: pile, at: now)
        default:
            return
        }
        cache.record(credential, decision)
    }

    private static func decision(
        _ result: SuccessFlag, _ balance: YKCDecimal, _ logical: BCDDigits, pile: PileID, at now: Date
    ) -> OfflineAuthorizationCache.Decision {
        let approved = result == .succeeded
        let cents = balance.rescaled(to: 2) ?? 0
        return OfflineAuthorizationCache.Decision(
            approved: approved, decidedAt: now, balanceCents: approved ? max(0, cents) : 0, logicalCardNumber: logical.description,
            pile: pile.description)
    }

    /// The policy's decision on a start no backend answered.
    func decide(_ credential: OfflineCredential?, billingModel: BillingModelReply?, now: Date = Date()) -> OfflineAuthorizationPolicy.Decision {
        let last = credential.flatMap { cache.decision(for: $0) }
        return policy.decide(credential: credential, last: last, billingModel: billingModel, now: now)
    }

    /// A new trade serial for a session the gateway approves, by the protocol's rule (docs/ykc/PROTOCOL-FACTS.md
    /// §1.4): pile id (14 digits), gun (2), the pile's local time `YYMMDDhhmmss`, a 4-digit counter.
    func newTradeSerial(pile: PileID, gun: GunNumber, now: Date, utcOffsetSeconds: Int) -> TradeSerial {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: utcOffsetSeconds) ?? TimeZone(identifier: "UTC") ?? calendar.timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: now)
        func two(_ n: Int?) -> String {
            let v = (n ?? 0) % 100
            return v < 10 ? "0\(v)" : "\(v)"
        }
        let gunDigits = String(gun.raw >> 4, radix: 16) + String(gun.raw & 0x0F, radix: 16)
        for _ in 0..<10_000 {
            let n = serialCounter.loadThenWrappingIncrement(ordering: .relaxed) % 10_000
            let counter = String(repeating: "0", count: 4 - String(n).count) + String(n)
            let text = pile.description + gunDigits + two(c.year) + two(c.month) + two(c.day) + two(c.hour) + two(c.minute)
                + two(c.second) + counter
            if let serial = TradeSerial(text), !ledger.contains(serial) { return serial }
        }
        // 10,000 serials of one pile and gun in one second: not reachable by a real pile.
        return TradeSerial(high: pile.raw << 8 | UInt64(gun.raw), low: UInt64(now.timeIntervalSince1970 * 1e6))
    }

    func count(approved grant: OfflineAuthorizationPolicy.Grant) {
        counts.withLockedValue { $0.approved[grant.rawValue, default: 0] += 1 }
    }

    func count(refused reason: OfflineAuthorizationPolicy.Refusal) {
        counts.withLockedValue { $0.refused[reason.rawValue, default: 0] += 1 }
    }

    var countsSnapshot: Counts { counts.withLockedValue { $0 } }

    /// `/v1/stats` → `offlineAuthorization`.
    func statsJSON() -> JSONValue {
        let c = countsSnapshot
        return .object([
            "mode": .string(policy.mode.rawValue),
            "approved": .object(c.approved.mapValues { .number(Double($0)) }),
            "refused": .object(c.refused.mapValues { .number(Double($0)) }),
            "cachedDecisions": .number(Double(cache.count)),
            "issued": .number(Double(ledger.count)),
        ])
    }

    /// `pilegate_offline_authorizations_total{result, reason}` and the cache's size.
    func collectMetrics(_ w: MetricsWriter) {
        let c = countsSnapshot
        for grant in [OfflineAuthorizationPolicy.Grant.recent, .allowList] {
            w.counter("pilegate_offline_authorizations_total", [("result", "approved"), ("reason", grant.rawValue)], c.approved[grant.rawValue] ?? 0)
        }
        for reason in OfflineAuthorizationPolicy.Refusal.allCases {
            w.counter("pilegate_offline_authorizations_total", [("result", "refused"), ("reason", reason.rawValue)], c.refused[reason.rawValue] ?? 0)
        }
        w.gauge("pilegate_offline_authorization_cached_decisions", [], Double(cache.count))
    }

    /// Waits until every decision and authorization recorded so far is in SQLite.
    func flush() async {
        await cache.flush()
        await ledger.flush()
    }
}
