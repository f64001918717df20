import Foundation
import NATS

/// How the cluster's NATS settings become the client's options, and how their secrets stay out of
/// printed configurations (docs/SECURITY.md, "NATS credentials").
extension GatewayConfiguration {
    /// Settings whose values are secrets: `--print-config` shows them as `<redacted>`.
    static let secretKeys: Set<String> = ["natsToken", "natsPassword"]

    /// The NATS credential and TLS settings, by key (for the cross-field checks).
    var natsSecuritySettings: [(key: String, value: String)] {
        [
            ("natsCredentials", natsCredentials), ("natsToken", natsToken), ("natsUser", natsUser),
            ("natsPassword", natsPassword), ("natsTLSCA", natsTLSCA), ("natsTLSCertificate", natsTLSCertificate),
            ("natsTLSKey", natsTLSKey),
        ]
    }

    /// `natsURL` with every password (`user:password@`) or token (`token@`) replaced by `<redacted>`.
    static func redactingCredentials(inNATSURL url: String) -> String {
        url.split(separator: ",", omittingEmptySubsequences: false).map { part -> String in
            let text = String(part)
            let authorityStart = text.range(of: "://")?.upperBound ?? text.startIndex
            let authorityEnd = text[authorityStart...].firstIndex(of: "/") ?? text.endIndex
            guard let at = text[authorityStart..<authorityEnd].lastIndex(of: "@") else { return text }
            let userInfo = text[authorityStart..<at]
            let redacted: String
            if let colon = userInfo.firstIndex(of: ":") {
                redacted = "\(userInfo[..<colon]):<redacted>"
            } else {
                redacted = "<redacted>"
            }
            return String(text[..<authorityStart]) + redacted + String(text[at...])
        }.joined(separator: ",")
    }

    /// Cross-field checks of the NATS credential and TLS settings: they need cluster mode, one kind
    /// of credentials at most, and pairs (user and password, certificate and key) complete.
    func validateNATSSettings() throws(ConfigurationError) {
        if !clusterEnabled, let set = natsSecuritySettings.first(where: { !$0.value.isEmpty }) {
            throw ConfigurationError(
                key: set.key, source: "configuration", problem: "is only used in cluster mode; set natsURL too (or remove it)")
        }
        let kinds = [("natsCredentials", natsCredentials), ("natsToken", natsToken), ("natsUser", natsUser)].filter { !$0.1.isEmpty }
        if kinds.count > 1 {
            throw ConfigurationError(
                key: kinds[1].0, source: "configuration",
                problem: "\(kinds.map(\.0).joined(separator: " and ")) are alternatives: set one kind of NATS credentials")
        }
        if natsUser.isEmpty != natsPassword.isEmpty {
            throw ConfigurationError(
                key: natsUser.isEmpty ? "natsUser" : "natsPassword", source: "configuration",
                problem: "natsUser and natsPassword go together")
        }
        if natsTLSCertificate.isEmpty != natsTLSKey.isEmpty {
            throw ConfigurationError(
                key: natsTLSCertificate.isEmpty ? "natsTLSCertificate" : "natsTLSKey", source: "configuration",
                problem: "natsTLSCertificate and natsTLSKey go together (PEM files)")
        }
    }

    /// The NATS client options of cluster mode: servers from `natsURL`, the node's name, the
    /// credentials (read from `natsCredentials` now, so a bad file stops start-up instead of failing
    /// every reconnect) and TLS. Errors name the setting and never quote a secret.
    public func natsClientOptions() throws(ConfigurationError) -> NATSClientOptions {
        var options: NATSClientOptions
        do { options = try NATSClientOptions(url: natsURL) } catch {
            throw ConfigurationError(
                key: "natsURL", source: "configuration", problem: "expected nats://host:port or tls://host:port, comma-separated")
        }
        options.name = "pilegate-\(nodeId)"
        if !natsCredentials.isEmpty {
            do { options.authentication = try NATSAuthentication.fromFile(natsCredentials) } catch {
                throw ConfigurationError(key: "natsCredentials", source: "configuration", problem: "\(error)")
            }
        } else if !natsToken.isEmpty {
            options.authentication = .token(natsToken)
        } else if !natsUser.isEmpty {
            options.authentication = .userPassword(user: natsUser, password: natsPassword)
        }
        for (key, path) in [("natsTLSCA", natsTLSCA), ("natsTLSCertificate", natsTLSCertificate), ("natsTLSKey", natsTLSKey)]
        where !path.isEmpty && !FileManager.default.isReadableFile(atPath: path) {
            throw ConfigurationError(key: key, source: "configuration", problem: "cannot read \(path)")
        }
        if !natsTLSCA.isEmpty || !natsTLSCertificate.isEmpty {
            options.tls = NATSTLSOptions(
                caFile: natsTLSCA.isEmpty ? nil : natsTLSCA,
                certificateFile: natsTLSCertificate.isEmpty ? nil : natsTLSCertificate,
                privateKeyFile: natsTLSKey.isEmpty ? nil : natsTLSKey
            )
        }
        return options
    }
}
