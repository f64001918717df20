import Foundation
@testable import PileGate
import Testing
import YKC

/// The offline policy's decisions, one rule at a time (pure: no sockets), and its settings.
@Suite("Offline authorization policy")
struct OfflineAuthorizationPolicyTests {
    static let card = OfflineCredential(card: BinaryID(raw: 0xD14B_0A54))
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func policy(_ mode: OfflineAuthorizationMode, amount: Double = 50, energy: Double = 0, allow: [String] = []) -> OfflineAuthorizationPolicy {
        var c = GatewayConfiguration()
        c.offlineAuthorization = mode
        c.offlineAuthorizationWindow = 3600
        c.offlineAuthorizationMaxAmount = amount
        c.offlineAuthorizationMaxEnergyKWh = energy
        c.offlineAuthorizationAllowList = allow
        return OfflineAuthorizationPolicy(config: c)
    }

    static func decision(approved: Bool, ago: TimeInterval, balance: Int64 = 0) -> OfflineAuthorizationCache.Decision {
        .init(approved: approved, decidedAt: now.addingTimeInterval(-ago), balanceCents: balance, logicalCardNumber: "0", pile: "1")
    }

    @Test("recent: within the window approved, older expired, never seen unknown, off refuses everything")
    func recent() {
        let p = Self.policy(.recent)
        #expect(p.decide(credential: Self.card, last: Self.decision(approved: true, ago: 60), billingModel: nil, now: Self.now) == .approve(.recent, capCents: 5000))
        #expect(p.decide(credential: Self.card, last: Self.decision(approved: true, ago: 7200), billingModel: nil, now: Self.now) == .refuse(.expired))
        #expect(p.decide(credential: Self.card, last: nil, billingModel: nil, now: Self.now) == .refuse(.unknown))
        #expect(p.decide(credential: nil, last: nil, billingModel: nil, now: Self.now) == .refuse(.unsupported))
        let off = Self.policy(.off)
        #expect(off.decide(credential: Self.card, last: Self.decision(approved: true, ago: 1), billingModel: nil, now: Self.now) == .refuse(.off))
    }

    @Test("the cap is the least of the amount, the energy at the cheapest tariff in use, and the balance last given")
    func caps() {
        let p = Self.policy(.recent, amount: 50)
        #expect(p.decide(credential: Self.card, last: Self.decision(approved: true, ago: 1, balance: 1234), billingModel: nil, now: Self.now) == .approve(.recent, capCents: 1234))
        var model = BillingModelReply(
            pileId: PileID("55010600000001")!, billingModel: "0001", sharpEnergyPrice: YKCDecimal(units: 120_000, scale: 5),
            sharpServiceFee: YKCDecimal(units: 40_000, scale: 5), peakEnergyPrice: YKCDecimal(units: 100_000, scale: 5),
            peakServiceFee: YKCDecimal(units: 40_000, scale: 5), flatEnergyPrice: YKCDecimal(units: 80_000, scale: 5),
            flatServiceFee: YKCDecimal(units: 40_000, scale: 5), valleyEnergyPrice: YKCDecimal(units: 10_000, scale: 5),
            valleyServiceFee: YKCDecimal(units: 10_000, scale: 5), lossRatio: 0, periods: Array(repeating: .flat, count: 24) + Array(repeating: .peak, count: 24))
        // Valley is cheapest but unused: the cheapest in use is flat, 1.20 yuan/kWh; 10 kWh → 12.00 yuan.
        let energy = Self.policy(.recent, amount: 0, energy: 10)
        #expect(energy.decide(credential: Self.card, last: Self.decision(approved: true, ago: 1), billingModel: model, now: Self.now) == .approve(.recent, capCents: 1200))
        // Energy only and no billing model known: no cap can be set.
        #expect(energy.decide(credential: Self.card, last: Self.decision(approved: true, ago: 1), billingModel: nil, now: Self.now) == .refuse(.noCap))
        // Both: the lower wins.
        model.periods = Array(repeating: .sharp, count: 48)
        let both = Self.policy(.recent, amount: 10, energy: 10)
        #expect(both.decide(credential: Self.card, last: Self.decision(approved: true, ago: 1), billingModel: model, now: Self.now) == .approve(.recent, capCents: 1000))
    }

    @Test("allow-list: listed cards and VINs approved in any spelling; a backend refusal within the window wins")
    func allowList() {
        let p = Self.policy(.allowList, allow: ["d14b0a54", "vin:lsvau2180n2183294"])
        #expect(p.decide(credential: Self.card, last: nil, billingModel: nil, now: Self.now) == .approve(.allowList, capCents: 5000))
        let vin = OfflineCredential(vin: "LSVAU2180N2183294")
        #expect(p.decide(credential: vin, last: nil, billingModel: nil, now: Self.now) == .approve(.allowList, capCents: 5000))
        #expect(p.decide(credential: OfflineCredential(card: BinaryID(raw: 1)), last: nil, billingModel: nil, now: Self.now) == .refuse(.unknown))
        #expect(p.decide(credential: Self.card, last: Self.decision(approved: false, ago: 60), billingModel: nil, now: Self.now) == .refuse(.refusedByBackend))
        // A refusal older than the window no longer counts.
        #expect(p.decide(credential: Self.card, last: Self.decision(approved: false, ago: 7200), billingModel: nil, now: Self.now) == .approve(.allowList, capCents: 5000))
        // recentOrAllowList: an expired approval still passes by the list.
        let either = Self.policy(.recentOrAllowList, allow: ["D14B0A54"])
        #expect(either.decide(credential: Self.card, last: Self.decision(approved: true, ago: 7200), billingModel: nil, now: Self.now) == .approve(.allowList, capCents: 5000))
    }

    @Test("credentials: cards, VINs and allow-list spellings")
    func credentials() {
        #expect(OfflineCredential(entry: "00000000D14B0A54") == Self.card)
        #expect(OfflineCredential(entry: "card:d14b0a54") == Self.card)
        #expect(OfflineCredential(entry: "LSVAU2180N2183294")?.kind == .vin)
        #expect(OfflineCredential(entry: "not a card") == nil)
        #expect(OfflineCredential(entry: "LSVAU2180N21832-4") == nil)
        #expect(OfflineCredential(startMethod: .account, card: .zero, vin: "") == nil)
        #expect(OfflineCredential(startMethod: .vin, card: .zero, vin: "") == nil)
    }

    @Test("settings: off by default; a policy without a cap, a bad allow-list entry or an empty allow-list is refused with the key named")
    func settings() throws {
        let defaults = try GatewayConfiguration.load(file: nil, environment: [:])
        #expect(defaults.offlineAuthorization == .off)
        let ok = try GatewayConfiguration.load(
            file: nil,
            environment: [
                "PILEGATE_OFFLINE_AUTHORIZATION": "recentOrAllowList", "PILEGATE_OFFLINE_AUTHORIZATION_MAX_ENERGY_KWH": "20",
                "PILEGATE_OFFLINE_AUTHORIZATION_ALLOW_LIST": "D14B0A54, LSVAU2180N2183294",
            ])
        #expect(ok.offlineAuthorizationAllowList == ["D14B0A54", "LSVAU2180N2183294"])
        #expect(ok.offlineAuthorizationMaxEnergyKWh == 20)
        #expect(ok.jsonDescription.contains(#""offlineAuthorizationAllowList": ["D14B0A54","LSVAU2180N2183294"]"#))
        #expect(ok.jsonDescription.contains(#""offlineAuthorization": "recentOrAllowList""#))
        func problem(_ env: [String: String]) -> ConfigurationError? {
            do { _ = try GatewayConfiguration.load(file: nil, environment: env) } catch { return error }
            return nil
        }
        #expect(problem(["PILEGATE_OFFLINE_AUTHORIZATION": "recent"])?.key == "offlineAuthorizationMaxAmount")
        #expect(problem(["PILEGATE_OFFLINE_AUTHORIZATION": "sometimes"])?.key == "offlineAuthorization")
        #expect(problem(["PILEGATE_OFFLINE_AUTHORIZATION": "allowList", "PILEGATE_OFFLINE_AUTHORIZATION_MAX_AMOUNT": "50"])?.key == "offlineAuthorizationAllowList")
        let bad = problem(["PILEGATE_OFFLINE_AUTHORIZATION_ALLOW_LIST": "D14B0A54,xyz"])
        #expect(bad?.key == "offlineAuthorizationAllowList")
        #expect(bad?.problem.contains("'xyz'") == true)
        let many = (0...GatewayConfiguration.maxOfflineAllowListEntries).map { String($0, radix: 16) }.joined(separator: ",")
        #expect(problem(["PILEGATE_OFFLINE_AUTHORIZATION_ALLOW_LIST": many])?.problem.contains("at most") == true)
    }
}
