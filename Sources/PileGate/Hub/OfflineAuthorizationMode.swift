/// Which card and VIN starts the gateway approves itself when no backend answers a start
/// request (0x31/0xA1) in time (`offlineAuthorization`). See `OfflineAuthorizationPolicy`.
public enum OfflineAuthorizationMode: String, Sendable, Equatable, CaseIterable, Codable {
    /// Refuse (`pile_disabled`), as a gateway without the policy does.
    case off
    /// Approve a card or VIN a backend approved within `offlineAuthorizationWindow`.
    case recent
    /// Approve the cards and VINs of `offlineAuthorizationAllowList`.
    case allowList
    /// Either of the two.
    case recentOrAllowList

    var usesRecent: Bool { self == .recent || self == .recentOrAllowList }
    var usesAllowList: Bool { self == .allowList || self == .recentOrAllowList }
}
