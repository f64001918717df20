import Foundation
import NATS
import NIOCore
import YKC

/// Every setting of the gateway, with embedded defaults so `pilegate serve` runs with no file.
///
/// Sources, later ones winning: the defaults below, a JSON config file (`--config`, keys as named
/// here), then `PILEGATE_*` environment variables (the key in UPPER_SNAKE_CASE, e.g. `pilePort` →
/// `PILEGATE_PILE_PORT`). An invalid value stops start-up with a `ConfigurationError` naming the key.
public struct GatewayConfiguration: Sendable, Equatable {
    // Listeners and storage.
    public var nodeId = ProcessInfo.processInfo.hostName
    public var pileHost = "0.0.0.0"
    public var pilePort = 8767
    public var apiHost = "127.0.0.1"
    public var apiPort = 8780
    public var dataDirectory = "./pilegate-data"
    /// Start with new, empty stores when `pilegate.sqlite` or `outbox.sqlite` exists but is empty
    /// or unreadable (the old files are moved aside, never deleted). Off: such a store stops
    /// start-up, because opening it as a new database would silently lose what it held.
    public var freshStore = false

    // API security (docs/SECURITY.md).
    /// PEM certificate chain and private key: set both to serve the API over TLS.
    public var apiTLSCertificate = ""
    public var apiTLSKey = ""
    /// PEM CA bundle: when set, every API client must present a certificate it signed (mutual
    /// TLS; refused at the handshake otherwise). Requires `apiTLSCertificate`.
    public var apiClientCA = ""
    /// Client-certificate subjects (`CN=name`) mapped to scopes, so a certificate can stand in
    /// for a bearer token. Setting any turns authentication on.
    public var apiClientCertificateScopes: [String: [String]] = [:]
    /// Allow an API without any authentication on a non-loopback address.
    public var apiInsecure = false

    // TLS for piles (docs/SECURITY.md, "TLS for piles"): a second pile listener, off unless a
    // certificate is set.
    /// Port of the TLS pile listener (0 = any free port); it listens only with `pileTLSCertificate`.
    public var pileTLSPort = 8768
    /// PEM certificate chain and private key of the TLS pile listener; re-read on SIGHUP.
    public var pileTLSCertificate = ""
    public var pileTLSKey = ""
    /// PEM CA bundle: when set, every TLS pile must present a certificate it signed, and may only
    /// log in with the pile id its certificate names (`pileTLSIdentityField`).
    public var pileTLSClientCA = ""
    /// The subject field of a pile's client certificate that holds its pile id.
    public var pileTLSIdentityField: PileTLSIdentityField = .commonName
    /// A TLS handshake not finished within this is closed (counted as `timeout`).
    public var pileTLSHandshakeTimeout: TimeInterval = 10

    // Cluster mode (docs/CLUSTER.md): on when `natsURL` is set.
    /// NATS server URL, or several comma-separated (`nats://10.0.0.5:4222,tls://nats.internal:4222`);
    /// empty: this node stands alone.
    public var natsURL = ""
    /// Prefix of every subject, stream and bucket of the cluster, so several clusters can share one NATS.
    public var clusterName = "pilegate"
    /// How often a node announces itself to the others.
    public var clusterHeartbeatInterval: TimeInterval = 2
    /// A node not heard from for this long is taken as dead (its piles shown offline).
    public var clusterNodeTimeout: TimeInterval = 10
    /// JetStream's duplicate window of the cluster's event stream: a bill re-sent with the same
    /// trade serial within it is stored once. 15 min, three times the longest resend interval
    /// of the protocol (once after 5 min, docs/ykc/PROTOCOL-FACTS.md §5.5); see docs/CLUSTER.md.
    public var clusterDuplicateWindow: TimeInterval = 900
    /// How long the event stream keeps events (acked or not), so a service away for days still
    /// gets what it missed: as long as a standalone outbox keeps a service's events.
    public var clusterStreamMaxAge: TimeInterval = 7 * 86_400
    /// Replicas of the event stream: 1 for one nats-server, 3 in production (a JetStream cluster).
    public var clusterStreamReplicas = 1
    /// A stream event handed to a backend and not acked within this time is delivered again
    /// (possibly by another node).
    public var clusterAckWait: TimeInterval = 30
    /// Deliveries of one event to one service at most; after that it is a dead letter (counted,
    /// logged with its stream sequence, kept in the stream until `clusterStreamMaxAge`).
    public var clusterMaxDeliver = 20
    /// How long a must-deliver event waits for the stream's acknowledgement before it is
    /// committed to the local outbox instead (and forwarded later).
    public var clusterPublishTimeout: TimeInterval = 2
    /// At most this many must-deliver events wait for the stream's acknowledgement at once; the
    /// next go to the local outbox at once (0x40 after its commit) and are forwarded later. Under
    /// more bills than the stream and this node keep up with, it bounds the 0x40 wait and keeps
    /// publishes from timing out after they were sent, which would cost each bill a publish, a
    /// commit and a second publish.
    public var clusterPublishInFlight = 1_000
    /// NATS credentials (docs/SECURITY.md, "NATS credentials"); one kind at most. Explicit settings
    /// win over credentials in `natsURL` (`nats://user:password@host`, `nats://token@host`).
    /// Path of a `.creds` file (user JWT and NKey seed, operator mode) or of an NKey seed file (`SU…`).
    public var natsCredentials = ""
    /// Token of an `authorization { token: … }` server. A secret: `--print-config` shows it redacted.
    public var natsToken = ""
    /// User and password of an `authorization { users: […] }` server; the password is redacted like the token.
    public var natsUser = ""
    public var natsPassword = ""
    /// PEM CA bundle that signs the NATS servers' certificates; setting it (or a client certificate)
    /// makes the node require TLS to NATS.
    public var natsTLSCA = ""
    /// PEM client certificate and key, for NATS servers that verify clients (`verify: true`).
    public var natsTLSCertificate = ""
    public var natsTLSKey = ""
    /// Whether cluster mode is on.
    public var clusterEnabled: Bool { !natsURL.isEmpty }

    // Sessions (docs/ykc/PROTOCOL-FACTS.md §5.1, §5.2).
    /// The first frame must be a login within this time.
    public var loginTimeout: TimeInterval = 10
    /// A pile that sends nothing for this long is closed (≈ 3 heartbeats + margin).
    public var livenessTimeout: TimeInterval = 35
    public var loginPolicy: LoginPolicy = .open
    /// How long a backend-decided login waits for an answer before the fallback applies.
    public var backendLoginTimeout: TimeInterval = 5
    /// Accept logins when no backend answers in time under the `backend` policy.
    public var backendLoginFallbackAccept = true
    /// Send a 0x56 time sync right after a successful login (common practice, docs/ykc/PROTOCOL-FACTS.md §5.1).
    public var timeSyncOnLogin = true
    /// UTC offset of the piles' wall clock, used for CP56Time2a times (China Standard Time).
    public var pileUTCOffsetSeconds = 8 * 3600

    // Per-connection limits.
    public var frameRatePerSecond: Double = 50
    public var frameBurst: Double = 200
    public var byteRatePerSecond: Double = 16_384
    public var byteBurst: Double = 65_536
    /// The accepted ranges of the four per-connection limits, shared by the configuration file
    /// and the per-pile overrides (`PUT /v1/piles/{id}/limits`, PileLimitStore).
    public static let connectionLimitRanges = (
        frameRatePerSecond: 0.1...1_000_000.0, frameBurst: 1...10_000_000.0,
        byteRatePerSecond: 1...1_000_000_000.0, byteBurst: 259...1_000_000_000.0)
    /// How long reading stops when a pile exceeds its rate (backpressure).
    public var throttlePause: TimeInterval = 1
    /// Throttle episodes within `throttleWindow` after which the connection is closed.
    public var maxThrottleEpisodes = 5
    public var throttleWindow: TimeInterval = 60
    /// Malformed-input events (garbage runs, CRC errors, bad lengths) tolerated per connection.
    public var maxMalformedFrames = 20
    /// Frames refused for coming before login or carrying another pile's id, before closing.
    public var maxRefusedFrames = 20
    /// Distinct frame keys tried on an encrypted login (its pile id is inside the ciphertext);
    /// 0 refuses encrypted logins. Bounds the work one login can cause.
    public var encryptedLoginKeyTrials = 64
    /// Bytes a pile may leave unread in our send buffer before we stop reading it, then close it.
    public var writeBufferHighWater = 32_768
    public var slowReaderTimeout: TimeInterval = 30
    /// Commands one pile may have waiting for its reply at once; more get `too_many_commands`.
    public var maxCommandsPerPile = 32
    /// SO_SNDBUF / SO_RCVBUF for pile sockets in bytes (0 = kernel default). Kernel buffers,
    /// not user space, dominate per-pile memory at a million connections.
    public var socketSendBuffer = 0
    public var socketReceiveBuffer = 0

    // Flapping (EMQX-like: 15 connects a minute → banned 5 minutes), counted per pile id.
    public var flapMaxConnects = 15
    /// The same per source address. Piles behind one concentrator or NAT share an address, so
    /// this is far higher than the per-pile limit; it stops a single host hammering the port.
    public var flapMaxConnectsPerAddress = 600
    public var flapWindow: TimeInterval = 60
    public var flapBanDuration: TimeInterval = 300

    // Global admission.
    public var maxConnections = 1_000_000
    public var maxConnectionsPerAddress = 1_000
    public var maxPendingLogins = 20_000
    public var acceptRatePerSecond: Double = 20_000
    public var loginRatePerSecond: Double = 20_000
    public var listenBacklog = 4_096
    /// Accepts per wake-up of the listening socket (NIO's default is 4).
    public var acceptsPerRead = 256
    public var eventLoopThreads = 0

    // Shutdown.
    /// Pile connections are closed spread over this window on SIGTERM, so a restart does not
    /// turn into a reconnect storm.
    public var drainWindow: TimeInterval = 10
    /// After the drain: how long pile connections that have not closed, and then API
    /// connections (a backend that stops reading its WebSocket), get before they are cut off.
    public var shutdownGrace: TimeInterval = 5

    // API connections.
    /// An API connection is closed when a request (its head, or its body) stalls this long, or
    /// when it is idle between requests this long.
    public var apiRequestTimeout: TimeInterval = 30
    /// API connections open at once (HTTP, TLS and backend WebSockets together); beyond it the
    /// API stops accepting until one closes (`APIConnectionLimit`).
    public var apiMaxConnections = 4_096

    /// File descriptors kept for everything that is not a pile connection (event loops,
    /// listeners, SQLite, API requests, backend WebSockets): pile connections are refused
    /// (reason `file_limit`) beyond the process's file limit (`ulimit -n`, read at start) minus this.
    public var fileDescriptorReserve = 128

    /// Backend hub tuning; its settings are the `hub*` keys.
    public var hub = HubConfiguration()

    /// Least time between two outbox commits while bills keep arriving (an idle outbox
    /// commits at once): trades a little 0x40 latency for far fewer WAL page writes per bill.
    public var outboxCommitSpacing: TimeInterval = 0.0005
    /// A durable outbox service with no instance connected for this long is forgotten: its
    /// undelivered events stop being kept for it (`DELETE /v1/outbox/services/{service}` does
    /// the same at once).
    public var outboxServiceRetention: TimeInterval = 7 * 86_400
    /// Events the outbox may hold (`Outbox.Settings.maxEvents`): past it a new bill is refused
    /// (no 0x40, the pile keeps it and re-sends it) instead of filling the data volume.
    public var outboxMaxEvents = 1_000_000

    // Offline authorization of card and VIN starts while no backend answers
    // (`GatewayConfiguration+OfflineAuthorization.swift`, `OfflineAuthorizationPolicy`).
    /// off (refuse, as without the policy), recent, allowList or recentOrAllowList.
    public var offlineAuthorization = OfflineAuthorizationMode.off
    /// How recent a backend's approval of the same card or VIN must be for `recent`.
    public var offlineAuthorizationWindow: TimeInterval = 86_400
    /// Card numbers (physical, hex) and VINs accepted offline under `allowList`.
    public var offlineAuthorizationAllowList: [String] = []
    /// Per-session cap in yuan, sent to the pile as the balance of the offline approval (0: none).
    public var offlineAuthorizationMaxAmount: Double = 0
    /// Per-session cap in kWh, turned into an amount at the pile's cheapest tariff (0: none).
    public var offlineAuthorizationMaxEnergyKWh: Double = 0
    /// Cards and VINs whose last backend decision is kept (the least recently decided go first).
    public var offlineAuthorizationCacheSize = 100_000

    // Registry.
    public var registryFlushInterval: TimeInterval = 0.2
    /// Pile ids the registry may hold (a row in SQLite and an entry in memory each). A login of an
    /// id it does not hold yet is refused once it holds this many: under the `open` policy every
    /// new id would otherwise add a row, so a client cycling through made-up ids would grow the
    /// database and the gateway's memory without end.
    public var registryMaxPiles = 2_000_000
    public var logLevel = "info"

    public init() {}

    /// How logins are decided.
    public enum LoginPolicy: String, Sendable, Equatable, CaseIterable {
        /// Accept and register any well-formed pile.
        case open
        /// Accept only piles already present in the registry.
        case registry
        /// Ask a backend (`login` events with a reply); fall back per `backendLoginFallbackAccept`.
        case backend
    }

    /// The effective event-loop count.
    public var resolvedEventLoopThreads: Int {
        eventLoopThreads > 0 ? eventLoopThreads : System.coreCount
    }
}

/// A setting that could not be applied, naming the key and where it came from.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public var key: String
    public var source: String
    public var problem: String
    public var description: String { "invalid setting '\(key)' (from \(source)): \(problem)" }
}

extension GatewayConfiguration {
    /// One settable key: its name and how to apply a textual or JSON value.
    struct Setting: Sendable {
        let key: String
        let apply: @Sendable (inout GatewayConfiguration, SettingValue) throws(SettingProblem) -> Void
    }

    /// A value as it came in: the text of an environment variable, or a JSON value from a config
    /// file. Kept apart so a JSON number is only ever a number (never mistaken for a Bool, as a
    /// Foundation `NSNumber` of 0 or 1 is) and a JSON `true` only ever a Bool.
    enum SettingValue: Sendable, CustomStringConvertible {
        case text(String)
        case json(JSONValue)

        /// A string value (environment text, or a JSON string).
        var string: String? {
            switch self {
            case .text(let s): s
            case .json(let v): v.stringValue
            }
        }

        /// A number: a JSON number, or a string holding one (environment, or a quoted JSON value).
        var number: Double? {
            switch self {
            case .json(let v) where v.doubleValue != nil: v.doubleValue
            default: string.flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
            }
        }

        /// The value as the user wrote it, for error messages.
        var description: String {
            switch self {
            case .text(let s): "'\(s)'"
            case .json(let v):
                if let n = v.doubleValue { Self.describe(n) } else if let s = v.stringValue { "'\(s)'" } else { v.description }
            }
        }

        /// A number as written in JSON: integers without a fraction, `1e300` rather than Swift's `1e+300`.
        static func describe(_ n: Double) -> String {
            if n.rounded() == n && abs(n) < 1e15 { return String(Int64(n)) }
            return "\(n)".replacingOccurrences(of: "e+", with: "e")
        }
    }

    struct SettingProblem: Error {
        var message: String
    }

    static func string(_ key: String, _ kp: WritableKeyPath<GatewayConfiguration, String> & Sendable, nonEmpty: Bool = true) -> Setting {
        Setting(key: key) { config, value throws(SettingProblem) in
            guard let s = value.string else { throw SettingProblem(message: "expected a string, got \(value)") }
            if nonEmpty && s.isEmpty { throw SettingProblem(message: "must not be empty") }
            guard s.utf8.count <= GatewayConfiguration.maxStringBytes else {
                throw SettingProblem(message: "longer than \(GatewayConfiguration.maxStringBytes) bytes (\(s.utf8.count))")
            }
            config[keyPath: kp] = s
        }
    }

    /// An integer setting. The range is checked on the number as given, before any conversion,
    /// so `1e300` is reported as `1e300`, never as what an overflowing conversion made of it.
    static func int(_ key: String, _ kp: WritableKeyPath<GatewayConfiguration, Int> & Sendable, _ range: ClosedRange<Int>) -> Setting {
        Setting(key: key) { config, value throws(SettingProblem) in
            guard let v = value.number, v.isFinite, v.rounded() == v else {
                throw SettingProblem(message: "expected an integer, got \(value)")
            }
            guard v >= Double(range.lowerBound) && v <= Double(range.upperBound) else {
                throw SettingProblem(message: "\(value) is outside \(range.lowerBound)...\(range.upperBound)")
            }
            config[keyPath: kp] = Int(v)
        }
    }

    static func double(_ key: String, _ kp: WritableKeyPath<GatewayConfiguration, Double> & Sendable, _ range: ClosedRange<Double>) -> Setting {
        Setting(key: key) { config, value throws(SettingProblem) in
            guard let v = value.number, v.isFinite else { throw SettingProblem(message: "expected a number, got \(value)") }
            guard range.contains(v) else {
                throw SettingProblem(
                    message: "\(value) is outside \(SettingValue.describe(range.lowerBound))...\(SettingValue.describe(range.upperBound))")
            }
            config[keyPath: kp] = v
        }
    }

    static func bool(_ key: String, _ kp: WritableKeyPath<GatewayConfiguration, Bool> & Sendable) -> Setting {
        Setting(key: key) { config, value throws(SettingProblem) in
            if case .json(let v) = value, let b = v.boolValue {
                config[keyPath: kp] = b
                return
            }
            if let s = value.string {
                switch s.lowercased() {
                case "true", "1", "yes", "on": config[keyPath: kp] = true; return
                case "false", "0", "no", "off": config[keyPath: kp] = false; return
                default: break
                }
            }
            throw SettingProblem(message: "expected true or false, got \(value)")
        }
    }

    /// All keys, in documentation order.
    static let settings: [Setting] = [
        string("nodeId", \.nodeId),
        string("pileHost", \.pileHost),
        int("pilePort", \.pilePort, 0...65535),
        string("apiHost", \.apiHost),
        int("apiPort", \.apiPort, 0...65535),
        string("dataDirectory", \.dataDirectory),
        string("apiTLSCertificate", \.apiTLSCertificate, nonEmpty: false),
        string("apiTLSKey", \.apiTLSKey, nonEmpty: false),
        string("apiClientCA", \.apiClientCA, nonEmpty: false),
        Setting(key: "apiClientCertificateScopes") { config, value throws(SettingProblem) in
            // A JSON object in a file; its JSON text in the environment.
            let object: JSONValue
            if case .json(let v) = value, v.objectValue != nil {
                object = v
            } else {
                guard let text = value.string, let parsed = try? JSONValue.parse(text) else {
                    throw SettingProblem(message: "expected a JSON object such as {\"CN=billing\": [\"events:subscribe\"]}")
                }
                object = parsed
            }
            guard let dict = object.objectValue, dict.count <= 1_000 else {
                throw SettingProblem(message: "expected a JSON object (at most 1000 entries) such as {\"CN=billing\": [\"events:subscribe\"]}")
            }
            var out: [String: [String]] = [:]
            for (subject, scopes) in dict {
                guard subject.hasPrefix("CN="), subject.count > 3, subject.utf8.count <= 256 else {
                    throw SettingProblem(message: "subject '\(subject.prefix(64))' must be written CN=<common name>")
                }
                let list = scopes.arrayValue ?? []
                let names = list.compactMap(\.stringValue)
                guard scopes.arrayValue != nil, names.count == list.count else {
                    throw SettingProblem(message: "\(subject): expected an array of scope names")
                }
                do throws(APITokenError) { out[subject] = try APIScope.parse(names).map(\.rawValue) } catch {
                    throw SettingProblem(message: "\(subject): \(error.message)")
                }
            }
            config.apiClientCertificateScopes = out
        },
        bool("apiInsecure", \.apiInsecure),
        int("pileTLSPort", \.pileTLSPort, 0...65535),
        string("pileTLSCertificate", \.pileTLSCertificate, nonEmpty: false),
        string("pileTLSKey", \.pileTLSKey, nonEmpty: false),
        string("pileTLSClientCA", \.pileTLSClientCA, nonEmpty: false),
        Setting(key: "pileTLSIdentityField") { config, value throws(SettingProblem) in
            guard let s = value.string, let field = PileTLSIdentityField(rawValue: s) else {
                throw SettingProblem(
                    message: "expected one of \(PileTLSIdentityField.allCases.map(\.rawValue).joined(separator: ", ")), got \(value)")
            }
            config.pileTLSIdentityField = field
        },
        double("pileTLSHandshakeTimeout", \.pileTLSHandshakeTimeout, 0.05...3600),
        bool("freshStore", \.freshStore),
        Setting(key: "natsURL") { config, value throws(SettingProblem) in
            guard let s = value.string, s.utf8.count <= 4_096 else { throw SettingProblem(message: "expected a string of at most 4096 bytes") }
            if !s.isEmpty {
                // The value is not echoed: it may hold a password.
                do { _ = try NATSClientOptions(url: s) } catch {
                    throw SettingProblem(message: "expected nats://host:port or tls://host:port (optionally user:password@ or token@ before the host), comma-separated")
                }
            }
            config.natsURL = s
        },
        Setting(key: "clusterName") { config, value throws(SettingProblem) in
            guard let s = value.string, ClusterSubjects.isToken(s) else {
                throw SettingProblem(message: "expected 1–64 of A–Z a–z 0–9 - _ (it prefixes NATS subjects), got \(value)")
            }
            config.clusterName = s
        },
        double("clusterHeartbeatInterval", \.clusterHeartbeatInterval, 0.05...60),
        double("clusterNodeTimeout", \.clusterNodeTimeout, 0.2...3600),
        double("clusterDuplicateWindow", \.clusterDuplicateWindow, 1...86_400),
        double("clusterStreamMaxAge", \.clusterStreamMaxAge, 60...31_536_000),
        int("clusterStreamReplicas", \.clusterStreamReplicas, 1...5),
        double("clusterAckWait", \.clusterAckWait, 0.1...3600),
        int("clusterMaxDeliver", \.clusterMaxDeliver, 1...1_000_000),
        double("clusterPublishTimeout", \.clusterPublishTimeout, 0.05...60),
        int("clusterPublishInFlight", \.clusterPublishInFlight, 1...1_000_000),
        string("natsCredentials", \.natsCredentials, nonEmpty: false),
        string("natsToken", \.natsToken, nonEmpty: false),
        string("natsUser", \.natsUser, nonEmpty: false),
        string("natsPassword", \.natsPassword, nonEmpty: false),
        string("natsTLSCA", \.natsTLSCA, nonEmpty: false),
        string("natsTLSCertificate", \.natsTLSCertificate, nonEmpty: false),
        string("natsTLSKey", \.natsTLSKey, nonEmpty: false),
        double("loginTimeout", \.loginTimeout, 0.05...3600),
        double("livenessTimeout", \.livenessTimeout, 0.05...86_400),
        Setting(key: "loginPolicy") { config, value throws(SettingProblem) in
            guard let s = value.string, let p = LoginPolicy(rawValue: s) else {
                throw SettingProblem(message: "expected one of \(LoginPolicy.allCases.map(\.rawValue).joined(separator: ", ")), got \(value)")
            }
            config.loginPolicy = p
        },
        double("backendLoginTimeout", \.backendLoginTimeout, 0.01...60),
        bool("backendLoginFallbackAccept", \.backendLoginFallbackAccept),
        bool("timeSyncOnLogin", \.timeSyncOnLogin),
        int("pileUTCOffsetSeconds", \.pileUTCOffsetSeconds, -50_400...50_400),
        double("frameRatePerSecond", \.frameRatePerSecond, connectionLimitRanges.frameRatePerSecond),
        double("frameBurst", \.frameBurst, connectionLimitRanges.frameBurst),
        double("byteRatePerSecond", \.byteRatePerSecond, connectionLimitRanges.byteRatePerSecond),
        double("byteBurst", \.byteBurst, connectionLimitRanges.byteBurst),
        double("throttlePause", \.throttlePause, 0.01...3600),
        int("maxThrottleEpisodes", \.maxThrottleEpisodes, 1...1_000_000),
        double("throttleWindow", \.throttleWindow, 0.1...86_400),
        int("maxMalformedFrames", \.maxMalformedFrames, 1...1_000_000),
        int("maxRefusedFrames", \.maxRefusedFrames, 1...1_000_000),
        int("encryptedLoginKeyTrials", \.encryptedLoginKeyTrials, 0...100_000),
        int("writeBufferHighWater", \.writeBufferHighWater, 1_024...64 << 20),
        double("slowReaderTimeout", \.slowReaderTimeout, 0.05...86_400),
        int("maxCommandsPerPile", \.maxCommandsPerPile, 1...10_000),
        int("socketSendBuffer", \.socketSendBuffer, 0...64 << 20),
        int("socketReceiveBuffer", \.socketReceiveBuffer, 0...64 << 20),
        int("flapMaxConnects", \.flapMaxConnects, 1...1_000_000),
        int("flapMaxConnectsPerAddress", \.flapMaxConnectsPerAddress, 1...100_000_000),
        double("flapWindow", \.flapWindow, 0.1...86_400),
        double("flapBanDuration", \.flapBanDuration, 0...604_800),
        int("maxConnections", \.maxConnections, 1...100_000_000),
        int("maxConnectionsPerAddress", \.maxConnectionsPerAddress, 1...100_000_000),
        int("maxPendingLogins", \.maxPendingLogins, 1...100_000_000),
        double("acceptRatePerSecond", \.acceptRatePerSecond, 1...10_000_000),
        double("loginRatePerSecond", \.loginRatePerSecond, 1...10_000_000),
        int("listenBacklog", \.listenBacklog, 1...1_000_000),
        int("acceptsPerRead", \.acceptsPerRead, 1...100_000),
        int("eventLoopThreads", \.eventLoopThreads, 0...1024),
        double("drainWindow", \.drainWindow, 0...3600),
        double("shutdownGrace", \.shutdownGrace, 0.1...600),
        double("apiRequestTimeout", \.apiRequestTimeout, 0.1...3600),
        int("apiMaxConnections", \.apiMaxConnections, 1...1_000_000),
        int("fileDescriptorReserve", \.fileDescriptorReserve, 64...1_000_000),
        double("outboxCommitSpacing", \.outboxCommitSpacing, 0...1),
        double("outboxServiceRetention", \.outboxServiceRetention, 1...31_536_000),
        int("outboxMaxEvents", \.outboxMaxEvents, 1...1_000_000_000),
    ] + offlineAuthorizationSettings + [
        double("hubWarmupWindow", \.hub.warmupWindow, 0...3600),
        double("hubAckTimeout", \.hub.ackTimeout, 0.01...3600),
        double("hubLatencyBound", \.hub.latencyBound, 0.001...3600),
        int("hubFailuresToEject", \.hub.failuresToEject, 1...1_000_000),
        double("hubBaseEjection", \.hub.baseEjection, 0...86_400),
        double("hubMaxEjection", \.hub.maxEjection, 0...86_400),
        int("hubQueueLimit", \.hub.queueLimit, 0...100_000_000),
        int("hubRemoteQueueLimit", \.hub.remoteQueueLimit, 0...100_000_000),
        double("hubReplyTimeout", \.hub.replyTimeout, 0.01...60),
        int("hubPendingRepliesPerPile", \.hub.pendingRepliesPerPile, 1...10_000),
        int("hubPendingRepliesTotal", \.hub.pendingRepliesTotal, 1...10_000_000),
        double("hubCommandTimeout", \.hub.commandTimeout, 0.01...3600),
        int("hubDefaultMaxInFlight", \.hub.defaultMaxInFlight, 1...100_000),
        int("hubMaxCommandsPerSocket", \.hub.maxCommandsPerSocket, 1...1_000_000),
        int("hubMaxMessageBytes", \.hub.maxMessageBytes, 1_024...(64 << 20)),
        int("hubQueuedCommandsPerPile", \.hub.queuedCommandsPerPile, 1...10_000),
        int("hubQueuedCommandsTotal", \.hub.queuedCommandsTotal, 1...10_000_000),
        double("registryFlushInterval", \.registryFlushInterval, 0.001...60),
        int("registryMaxPiles", \.registryMaxPiles, 1...100_000_000),
        Setting(key: "logLevel") { config, value throws(SettingProblem) in
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard let s = value.string, levels.contains(s) else {
                throw SettingProblem(message: "expected one of \(levels.joined(separator: ", ")), got \(value)")
            }
            config.logLevel = s
        },
    ]

    /// The environment variable for a key: `pilePort` → `PILEGATE_PILE_PORT`.
    public static func environmentName(for key: String) -> String {
        var out = "PILEGATE_"
        var previousLower = false
        for c in key {
            if c.isUppercase && previousLower { out.append("_") }
            out.append(contentsOf: c.uppercased())
            previousLower = c.isLowercase || c.isNumber
        }
        return out
    }

    /// All documented keys.
    public static var keys: [String] { settings.map(\.key) }

    /// Defaults, then the file (if any), then the environment.
    public static func load(
        file: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigurationError) -> GatewayConfiguration {
        var config = GatewayConfiguration()
        if let file {
            try config.apply(fileAt: file)
        }
        try config.apply(environment: environment)
        try config.validate()
        return config
    }

    /// The largest configuration file read (a real one is a few KiB): a path that names a huge
    /// file or a device such as /dev/zero is refused instead of read into memory, at start and at
    /// every reload.
    public static let maxFileBytes = 1 << 20
    /// The longest string setting (paths, host names, node id), from the file or the environment.
    public static let maxStringBytes = 4_096

    /// Applies a JSON object of settings; unknown keys are an error (a typo must not pass silently).
    public mutating func apply(fileAt path: String) throws(ConfigurationError) {
        guard let file = FileHandle(forReadingAtPath: path) else {
            throw ConfigurationError(key: "config", source: path, problem: "cannot read the file")
        }
        defer { try? file.close() }
        let data: Data
        do {
            data = try file.read(upToCount: Self.maxFileBytes + 1) ?? Data()
        } catch {
            throw ConfigurationError(key: "config", source: path, problem: "cannot read the file: \(error)")
        }
        guard data.count <= Self.maxFileBytes else {
            throw ConfigurationError(key: "config", source: path, problem: "larger than \(Self.maxFileBytes) bytes")
        }
        let object: JSONValue
        do {
            object = try JSONValue.parse(data)
        } catch {
            throw ConfigurationError(key: "config", source: path, problem: "not valid JSON: \(error.description)")
        }
        guard let dict = object.objectValue else {
            throw ConfigurationError(key: "config", source: path, problem: "expected a JSON object of settings")
        }
        let byKey = Dictionary(uniqueKeysWithValues: Self.settings.map { ($0.key, $0) })
        for (key, value) in dict.sorted(by: { $0.key < $1.key }) {
            guard let setting = byKey[key] else {
                throw ConfigurationError(key: key, source: path, problem: "unknown setting (known: \(Self.keys.joined(separator: ", ")))")
            }
            do { try setting.apply(&self, .json(value)) } catch {
                throw ConfigurationError(key: key, source: path, problem: error.message)
            }
        }
    }

    /// Variables the CLI's client verbs read (`--api`, `--token`, TLS files), not gateway
    /// settings: `serve` ignores them, so one shell can hold both.
    public static let clientEnvironmentNames: Set<String> = [
        "PILEGATE_API", "PILEGATE_TOKEN", "PILEGATE_CACERT", "PILEGATE_CERT", "PILEGATE_KEY",
    ]

    /// Applies `PILEGATE_*` variables; an unknown `PILEGATE_` variable is an error too (except
    /// the client variables in `clientEnvironmentNames`).
    public mutating func apply(environment: [String: String]) throws(ConfigurationError) {
        let byEnv = Dictionary(uniqueKeysWithValues: Self.settings.map { (Self.environmentName(for: $0.key), $0) })
        for (name, value) in environment.sorted(by: { $0.key < $1.key })
        where name.hasPrefix("PILEGATE_") && !Self.clientEnvironmentNames.contains(name) {
            guard let setting = byEnv[name] else {
                throw ConfigurationError(key: name, source: "environment", problem: "unknown setting")
            }
            do { try setting.apply(&self, .text(value)) } catch {
                throw ConfigurationError(key: setting.key, source: "environment \(name)", problem: error.message)
            }
        }
    }

    /// Cross-field checks.
    public func validate() throws(ConfigurationError) {
        if clusterEnabled && clusterNodeTimeout < 2 * clusterHeartbeatInterval {
            throw ConfigurationError(
                key: "clusterNodeTimeout", source: "configuration",
                problem: "must be at least twice clusterHeartbeatInterval, or one late heartbeat declares a live node dead")
        }
        try validateNATSSettings()
        if livenessTimeout <= 0 {
            throw ConfigurationError(key: "livenessTimeout", source: "configuration", problem: "must be positive")
        }
        if maxConnectionsPerAddress > maxConnections {
            throw ConfigurationError(
                key: "maxConnectionsPerAddress", source: "configuration",
                problem: "\(maxConnectionsPerAddress) exceeds maxConnections \(maxConnections)")
        }
        if byteBurst < 259 {
            throw ConfigurationError(key: "byteBurst", source: "configuration", problem: "must allow at least one full frame (259 bytes)")
        }
        if apiTLSCertificate.isEmpty != apiTLSKey.isEmpty {
            throw ConfigurationError(
                key: apiTLSCertificate.isEmpty ? "apiTLSCertificate" : "apiTLSKey", source: "configuration",
                problem: "apiTLSCertificate and apiTLSKey go together (PEM files)")
        }
        if !apiClientCA.isEmpty && apiTLSCertificate.isEmpty {
            throw ConfigurationError(key: "apiClientCA", source: "configuration", problem: "mutual TLS needs apiTLSCertificate and apiTLSKey too")
        }
        if pileTLSCertificate.isEmpty != pileTLSKey.isEmpty {
            throw ConfigurationError(
                key: pileTLSCertificate.isEmpty ? "pileTLSCertificate" : "pileTLSKey", source: "configuration",
                problem: "pileTLSCertificate and pileTLSKey go together (PEM files)")
        }
        if !pileTLSClientCA.isEmpty && pileTLSCertificate.isEmpty {
            throw ConfigurationError(
                key: "pileTLSClientCA", source: "configuration", problem: "client certificates need pileTLSCertificate and pileTLSKey too")
        }
        if !pileTLSCertificate.isEmpty && pileTLSPort != 0 && pileTLSPort == pilePort {
            throw ConfigurationError(key: "pileTLSPort", source: "configuration", problem: "\(pileTLSPort) is pilePort too; give TLS piles a port of their own")
        }
        if !apiClientCertificateScopes.isEmpty && apiClientCA.isEmpty {
            throw ConfigurationError(
                key: "apiClientCertificateScopes", source: "configuration", problem: "client certificates need apiClientCA (the CA that signs them)")
        }
        try validateOfflineAuthorization()
        if hub.baseEjection > hub.maxEjection {
            throw ConfigurationError(
                key: "hubBaseEjection", source: "configuration",
                problem: "\(hub.baseEjection) exceeds hubMaxEjection \(hub.maxEjection)")
        }
    }
}

extension GatewayConfiguration {
    /// The effective settings as a JSON object (keys as accepted in a config file). Secrets
    /// (`secretKeys`, and a password or token inside `natsURL`) print as `<redacted>`, so the output
    /// can be pasted into a ticket; put the real values back before using it as a config file.
    public var jsonDescription: String {
        let texts = settingTexts.map { entry -> (key: String, value: String) in
            if Self.secretKeys.contains(entry.key), entry.value != "\"\"" { return (entry.key, "\"<redacted>\"") }
            if entry.key == "natsURL" {
                let url = Self.redactingCredentials(inNATSURL: natsURL)
                return (entry.key, "\"\(url.replacingOccurrences(of: "\"", with: "\\\""))\"")
            }
            return entry
        }
        return "{\n" + texts.map { "  \"\($0.key)\": \($0.value)" }.joined(separator: ",\n") + "\n}"
    }

    /// Every setting's value as JSON text, by key, in declaration order: what `--print-config`
    /// shows, and what a reload compares to tell which settings changed.
    var settingTexts: [(key: String, value: String)] {
        let mirror = Mirror(reflecting: self)
        var parts: [(key: String, value: String)] = []
        var children = mirror.children.map { ($0.label ?? "", $0.value) }
        // Nested hub tuning appears under its hub* keys.
        for child in Mirror(reflecting: hub).children {
            guard let label = child.label else { continue }
            children.append(("hub" + label.prefix(1).uppercased() + label.dropFirst(), child.value))
        }
        for (key, childValue) in children {
            guard Self.keys.contains(key) else { continue }
            let value: String
            switch childValue {
            case let s as String: value = "\"\(s.replacingOccurrences(of: "\"", with: "\\\""))\""
            case let p as LoginPolicy: value = "\"\(p.rawValue)\""
            case let f as PileTLSIdentityField: value = "\"\(f.rawValue)\""
            case let m as OfflineAuthorizationMode: value = "\"\(m.rawValue)\""
            case let list as [String]:
                let data = (try? JSONSerialization.data(withJSONObject: list, options: [.withoutEscapingSlashes])) ?? Data("[]".utf8)
                value = String(decoding: data, as: UTF8.self)
            case let b as Bool: value = b ? "true" : "false"
            case let m as [String: [String]]:
                let data = (try? JSONSerialization.data(withJSONObject: m, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
                value = String(decoding: data, as: UTF8.self)
            default: value = "\(childValue)"
            }
            parts.append((key, value))
        }
        return parts
    }
}
