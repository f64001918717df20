import Foundation
import YKC

/// The `offlineAuthorization*` settings: what the gateway may approve itself when no backend
/// answers a card or VIN start (`OfflineAuthorizationPolicy`), kept here so the policy's keys,
/// bounds and cross-checks read as one.
extension GatewayConfiguration {
    /// The most allow-list entries (cards and VINs) a configuration may hold.
    public static let maxOfflineAllowListEntries = 10_000

    static let offlineAuthorizationSettings: [Setting] = [
        Setting(key: "offlineAuthorization") { config, value throws(SettingProblem) in
            guard let s = value.string, let mode = OfflineAuthorizationMode(rawValue: s) else {
                throw SettingProblem(
                    message: "expected one of \(OfflineAuthorizationMode.allCases.map(\.rawValue).joined(separator: ", ")), got \(value)")
            }
            config.offlineAuthorization = mode
        },
        double("offlineAuthorizationWindow", \.offlineAuthorizationWindow, 1...31_536_000),
        Setting(key: "offlineAuthorizationAllowList") { config, value throws(SettingProblem) in
            // A JSON array of strings in a file; a comma-separated list in the environment.
            let entries: [String]
            if case .json(let v) = value, let list = v.arrayValue {
                let strings = list.compactMap(\.stringValue)
                guard strings.count == list.count else {
                    throw SettingProblem(message: "expected an array of card numbers and VINs (strings)")
                }
                entries = strings
            } else if let text = value.string {
                entries = text.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            } else {
                throw SettingProblem(message: "expected an array of card numbers and VINs, got \(value)")
            }
            guard entries.count <= GatewayConfiguration.maxOfflineAllowListEntries else {
                throw SettingProblem(message: "\(entries.count) entries; at most \(GatewayConfiguration.maxOfflineAllowListEntries)")
            }
            for entry in entries where OfflineCredential(entry: entry) == nil {
                throw SettingProblem(
                    message: "'\(entry.prefix(40))' is neither a card number (up to 16 hex digits) nor a VIN (17 letters and digits)")
            }
            config.offlineAuthorizationAllowList = entries
        },
        double("offlineAuthorizationMaxAmount", \.offlineAuthorizationMaxAmount, 0...1_000_000),
        double("offlineAuthorizationMaxEnergyKWh", \.offlineAuthorizationMaxEnergyKWh, 0...100_000),
        int("offlineAuthorizationCacheSize", \.offlineAuthorizationCacheSize, 1...10_000_000),
    ]

    /// A policy that approves anything needs a cap: an offline session is never unbounded.
    func validateOfflineAuthorization() throws(ConfigurationError) {
        guard offlineAuthorization != .off else { return }
        if offlineAuthorizationMaxAmount <= 0 && offlineAuthorizationMaxEnergyKWh <= 0 {
            throw ConfigurationError(
                key: "offlineAuthorizationMaxAmount", source: "configuration",
                problem: "offlineAuthorization '\(offlineAuthorization.rawValue)' needs a per-session cap: "
                    + "offlineAuthorizationMaxAmount (yuan) or offlineAuthorizationMaxEnergyKWh")
        }
        if offlineAuthorization == .allowList && offlineAuthorizationAllowList.isEmpty {
            throw ConfigurationError(
                key: "offlineAuthorizationAllowList", source: "configuration",
                problem: "offlineAuthorization 'allowList' needs at least one card number or VIN")
        }
    }
}
