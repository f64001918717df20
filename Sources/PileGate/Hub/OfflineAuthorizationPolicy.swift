import Foundation
import YKC

/// Decides a card or VIN start that no backend answered in time (no backend subscribed to start
/// requests, none reachable, or none replying within `hubReplyTimeout`). Pure: it sees the
/// credential, the last backend decision the gateway cached for it, and the pile's billing model.
///
/// - A backend's refusal within the window is the latest word: refused offline too, whatever
///   the mode (a frozen account stays frozen through an outage).
/// - `recent`: approved when a backend approved the same card or VIN within
///   `offlineAuthorizationWindow` (the cache keeps only the last decision, so "not refused since").
/// - `allowList`: approved when the card or VIN is on `offlineAuthorizationAllowList`.
/// - Every approval carries a cap, given to the pile as the account balance of the 0x32/0xA2
///   (docs/ykc/PROTOCOL-FACTS.md §3.4: balance in 0.01 yuan; the pile stops when it is used up): the least of
///   `offlineAuthorizationMaxAmount`, `offlineAuthorizationMaxEnergyKWh` at the pile's cheapest
///   tariff in use (so that the energy delivered stays within the cap whatever the period), and
///   for a recent approval the balance the backend gave then, when it gave one.
struct OfflineAuthorizationPolicy: Sendable, Equatable {
    var mode: OfflineAuthorizationMode
    var window: TimeInterval
    var allowList: Set<OfflineCredential>
    /// 0.01 yuan; 0 = no amount cap.
    var maxAmountCents: Int64
    /// kWh; 0 = no energy cap.
    var maxEnergyKWh: Double

    init(config: GatewayConfiguration) {
        mode = config.offlineAuthorization
        window = config.offlineAuthorizationWindow
        allowList = Set(config.offlineAuthorizationAllowList.compactMap(OfflineCredential.init(entry:)))
        maxAmountCents = Int64((config.offlineAuthorizationMaxAmount * 100).rounded(.down))
        maxEnergyKWh = config.offlineAuthorizationMaxEnergyKWh
    }

    /// Why a start was approved offline (the `reason` of the event and the metric label).
    enum Grant: String, Sendable {
        case recent
        case allowList = "allow_list"
    }

    /// Why a start was refused offline (the metric label).
    enum Refusal: String, Sendable, CaseIterable {
        /// The policy is off.
        case off
        /// Start method 2 (account), or a VIN start without a readable VIN.
        case unsupported
        /// Neither approved recently nor on the allow-list.
        case unknown
        /// Approved by a backend, but longer ago than the window.
        case expired
        /// A backend refused it last, within the window.
        case refusedByBackend = "refused_by_backend"
        /// No cap could be set (only an energy cap, and no billing model known for the pile).
        case noCap = "no_cap"
        /// The authorization could not be recorded durably (the outbox or the database failed).
        case storeFailed = "store_failed"
    }

    enum Decision: Sendable, Equatable {
        /// Approve with this balance (0.01 yuan) for the pile.
        case approve(Grant, capCents: Int64)
        case refuse(Refusal)
    }

    func decide(
        credential: OfflineCredential?, last: OfflineAuthorizationCache.Decision?, billingModel: BillingModelReply?, now: Date
    ) -> Decision {
        guard mode != .off else { return .refuse(.off) }
        guard let credential else { return .refuse(.unsupported) }
        let withinWindow = last.map { now.timeIntervalSince($0.decidedAt) <= window } ?? false
        if let last, withinWindow, !last.approved { return .refuse(.refusedByBackend) }
        let grant: Grant
        if mode.usesRecent, let last, last.approved, withinWindow {
            grant = .recent
        } else if mode.usesAllowList, allowList.contains(credential) {
            grant = .allowList
        } else if mode.usesRecent, last?.approved == true {
            return .refuse(.expired)
        } else {
            return .refuse(.unknown)
        }
        var caps: [Int64] = []
        if maxAmountCents > 0 { caps.append(maxAmountCents) }
        if maxEnergyKWh > 0, let price = billingModel.flatMap(Self.cheapestPrice), price > 0 {
            caps.append(Int64((maxEnergyKWh * price * 100).rounded(.down)))
        }
        guard var cap = caps.min() else { return .refuse(.noCap) }
        if grant == .recent, let balance = last?.balanceCents, balance > 0 { cap = min(cap, balance) }
        return .approve(grant, capCents: min(cap, Int64(UInt32.max)))
    }

    /// The lowest energy + service price (yuan/kWh) among the tariff periods the model uses.
    static func cheapestPrice(_ model: BillingModelReply) -> Double? {
        func yuan(_ d: YKCDecimal) -> Double { Double(d.units) / pow(10, Double(d.scale)) }
        var prices: [Double] = []
        var seen = Set<UInt8>()
        for period in model.periods where seen.insert(period.rawValue).inserted {
            switch period {
            case .sharp: prices.append(yuan(model.sharpEnergyPrice) + yuan(model.sharpServiceFee))
            case .peak: prices.append(yuan(model.peakEnergyPrice) + yuan(model.peakServiceFee))
            case .flat: prices.append(yuan(model.flatEnergyPrice) + yuan(model.flatServiceFee))
            case .valley: prices.append(yuan(model.valleyEnergyPrice) + yuan(model.valleyServiceFee))
            case .unrecognized: continue
            }
        }
        return prices.min()
    }
}
