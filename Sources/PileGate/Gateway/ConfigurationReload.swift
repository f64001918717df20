import Foundation

/// What a configuration reload did (SIGHUP, `POST /v1/config/reload`): the settings whose new
/// value now applies, those that changed but keep their running value until a restart, and the
/// certificates read again.
///
/// Which settings apply live, and from when, is `liveSettings` — the single list that
/// docs/CONFIGURATION.md ("Reloading") describes. Everything else (addresses, ports, the data
/// directory, thread counts, the hub's and the outbox's tuning, …) is fixed at start-up.
public struct ConfigurationReload: Sendable, Codable, Equatable {
    /// Live settings whose value changed; in force from now (see `liveSettings` for when each bites).
    public var applied: [String]
    /// Settings whose value changed but that need a restart; the running value stays.
    public var restartRequired: [String]
    /// TLS certificates read again from their files: `pile`, `api`.
    public var certificatesReloaded: [String]
    /// How many reloads the gateway has applied, this one included.
    public var generation: Int

    /// One live setting: its key and how to take its value from a newly loaded configuration.
    struct LiveSetting: Sendable {
        let key: String
        let take: @Sendable (inout GatewayConfiguration, GatewayConfiguration) -> Void
    }

    static func live<V>(_ key: String, _ kp: WritableKeyPath<GatewayConfiguration, V> & Sendable) -> LiveSetting {
        LiveSetting(key: key) { running, loaded in running[keyPath: kp] = loaded[keyPath: kp] }
    }

    /// The settings a reload applies, and from when. New connections (a connection keeps the
    /// limits in force when it was accepted): the per-connection limits, `loginTimeout`,
    /// `livenessTimeout`, `throttlePause`, `maxCommandsPerPile`, the TLS handshake settings. Next
    /// login: the login policy, its timeouts and fallback, `timeSyncOnLogin`, `registryMaxPiles`. Every session at its
    /// next use: `slowReaderTimeout`, `encryptedLoginKeyTrials`. Next connection: the admission caps
    /// and paces. Next shutdown: `drainWindow`, `shutdownGrace`. At once: `logLevel` (under
    /// `pilegate serve`). The next start no backend answers: the `offlineAuthorization*` policy.
    static let liveSettings: [LiveSetting] = [
        live("loginTimeout", \.loginTimeout),
        live("livenessTimeout", \.livenessTimeout),
        live("loginPolicy", \.loginPolicy),
        live("backendLoginTimeout", \.backendLoginTimeout),
        live("backendLoginFallbackAccept", \.backendLoginFallbackAccept),
        live("timeSyncOnLogin", \.timeSyncOnLogin),
        live("registryMaxPiles", \.registryMaxPiles),
        live("frameRatePerSecond", \.frameRatePerSecond),
        live("frameBurst", \.frameBurst),
        live("byteRatePerSecond", \.byteRatePerSecond),
        live("byteBurst", \.byteBurst),
        live("throttlePause", \.throttlePause),
        live("maxThrottleEpisodes", \.maxThrottleEpisodes),
        live("throttleWindow", \.throttleWindow),
        live("maxMalformedFrames", \.maxMalformedFrames),
        live("maxRefusedFrames", \.maxRefusedFrames),
        live("encryptedLoginKeyTrials", \.encryptedLoginKeyTrials),
        live("slowReaderTimeout", \.slowReaderTimeout),
        live("maxCommandsPerPile", \.maxCommandsPerPile),
        live("maxConnections", \.maxConnections),
        live("maxConnectionsPerAddress", \.maxConnectionsPerAddress),
        live("maxPendingLogins", \.maxPendingLogins),
        live("acceptRatePerSecond", \.acceptRatePerSecond),
        live("loginRatePerSecond", \.loginRatePerSecond),
        live("drainWindow", \.drainWindow),
        live("shutdownGrace", \.shutdownGrace),
        live("logLevel", \.logLevel),
        live("pileTLSIdentityField", \.pileTLSIdentityField),
        live("pileTLSHandshakeTimeout", \.pileTLSHandshakeTimeout),
    ] + offlineAuthorizationLive

    /// The offline authorization policy: from the next start request no backend answers.
    static let offlineAuthorizationLive: [LiveSetting] = [
        live("offlineAuthorization", \.offlineAuthorization),
        live("offlineAuthorizationWindow", \.offlineAuthorizationWindow),
        live("offlineAuthorizationAllowList", \.offlineAuthorizationAllowList),
        live("offlineAuthorizationMaxAmount", \.offlineAuthorizationMaxAmount),
        live("offlineAuthorizationMaxEnergyKWh", \.offlineAuthorizationMaxEnergyKWh),
        live("offlineAuthorizationCacheSize", \.offlineAuthorizationCacheSize),
    ]

    /// TLS paths, live while the listener they belong to keeps speaking TLS (turning TLS on or off
    /// needs a restart).
    static let pileTLSFiles: [LiveSetting] = [
        live("pileTLSCertificate", \.pileTLSCertificate), live("pileTLSKey", \.pileTLSKey), live("pileTLSClientCA", \.pileTLSClientCA),
    ]
    static let apiTLSFiles: [LiveSetting] = [
        live("apiTLSCertificate", \.apiTLSCertificate), live("apiTLSKey", \.apiTLSKey), live("apiClientCA", \.apiClientCA),
    ]

    /// The configuration to run with after loading `loaded` while `running` is in force: `running`
    /// with every live setting taken from `loaded`; and which changed settings applied and which
    /// wait for a restart.
    static func plan(
        running: GatewayConfiguration, loaded: GatewayConfiguration, pileTLSLive: Bool, apiTLSLive: Bool
    ) -> (effective: GatewayConfiguration, applied: [String], restartRequired: [String]) {
        let before = Dictionary(uniqueKeysWithValues: running.settingTexts.map { ($0.key, $0.value) })
        let changed = Set(loaded.settingTexts.filter { before[$0.key] != $0.value }.map(\.key))
        var effective = running
        var liveKeys: [LiveSetting] = liveSettings
        // The listener keeps TLS (and mutual TLS stays on or off): its files may change live.
        if pileTLSLive && !loaded.pileTLSCertificate.isEmpty && running.pileTLSClientCA.isEmpty == loaded.pileTLSClientCA.isEmpty {
            liveKeys += pileTLSFiles
        }
        if apiTLSLive && !loaded.apiTLSCertificate.isEmpty && running.apiClientCA.isEmpty == loaded.apiClientCA.isEmpty {
            liveKeys += apiTLSFiles
        }
        for setting in liveKeys { setting.take(&effective, loaded) }
        let liveNames = Set(liveKeys.map(\.key))
        let order = GatewayConfiguration.keys
        return (
            effective, order.filter { changed.contains($0) && liveNames.contains($0) },
            order.filter { changed.contains($0) && !liveNames.contains($0) }
        )
    }
}

/// Why a reload was refused; the running configuration stays as it was.
public enum ConfigurationReloadError: Error, CustomStringConvertible, Sendable {
    /// The gateway was not given a configuration source (only `pilegate serve` sets one).
    case unavailable
    /// The file or the environment holds an invalid setting, or the settings do not fit together.
    case invalid(String)
    /// A TLS file the new configuration names does not load.
    case certificate(String)

    public var description: String {
        switch self {
        case .unavailable: "this gateway has no configuration file to reload"
        case .invalid(let m): m
        case .certificate(let m): m
        }
    }
}
