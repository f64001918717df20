import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import PileSim
import YKC
import YKCCipher

/// `pilegate simulate`: runs a fleet of simulated piles against a gateway and reports progress.
///
/// It is the load driver and the demo: each pile logs in, heartbeats per gun, asks for its
/// billing model and answers commands like firmware does (PileSim), and bills can be injected
/// at a steady rate to exercise the 0x3B → 0x40 path.
struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Drive simulated piles at a gateway.",
        discussion: """
            Starts --piles simulated piles (ids from --first-id upwards) that connect to --gateway at \
            --rate connections per second from --source-addresses local addresses (127.0.0.1…k), \
            runs them for --duration seconds, prints a progress line every --report-interval seconds \
            and a summary at the end. Exits non-zero when no pile logged in, or with \
            --expect-all-login when not every pile was logged in at the end.

            Several gateways: --gateway takes a comma-separated list (the nodes of a cluster). With \
            --gateway-assignment round-robin (the default) the k-th pile from --first-id connects to \
            gateway k mod n; with hash, a pile connects to gateway FNV-1a-64(its 14-digit id) mod n. \
            Source addresses go round-robin the same way (pile k binds 127.0.0.(k mod N + 1)). With \
            --failover each reconnect goes to a random other gateway of the list, as through a load \
            balancer: the piles of a node that drains or dies move to the others.

            Several processes: a process may hold only so many open files (ulimit -n; one per pile), \
            so --workers N runs the fleet in N copies of this command, each with a share of \
            consecutive piles (they differ by at most one), and waits for them. --rate and \
            --bills-per-minute are for the whole run and split by share. Each worker prints its figures \
            as one JSON line every --report-interval and at the end; this process prints their sum \
            (counters added, latency histograms merged, not averaged) as the progress lines and the \
            summary. "all logged in" is the time from the start until every pile of every worker has \
            been logged in at once. A worker that fails or ends without its summary fails the run.

            Charging: --charging F makes that fraction of the piles (spread evenly by pile number) \
            charge by themselves on gun 1: a session of --charging-session seconds with a charging \
            0x13 every --charging-realtime seconds, then a bill (0x3B, re-sent until 0x40), a rest of \
            --charging-pause seconds, and the next session.

            Bills (0x3B): --bills-per-minute uploads bills at a steady rate across the fleet (open loop); \
            --bills-in-flight N keeps N bills outstanding per pile, queuing a new one as each is \
            acknowledged (closed loop: as fast as the 0x40s come). A pile re-sends an unacknowledged \
            bill every --bill-retry seconds, also after reconnecting, and abandons it after \
            --bill-max-sends sends. --bills-after S holds either load back for S seconds (e.g. until \
            the fleet is in); the summary gives the bills acked per second from then to the last 0x40. --acked-bills-out appends the trade serial of every bill a pile got \
            0x40 for, one per line, written as each 0x40 arrives. With --drain-timeout, new bills stop \
            after --duration and the run waits up to that long for the outstanding ones to be acked. \
            The summary gives the bill-ack latency (first send of a bill to its 0x40) p50/p99/max; \
            --summary-json writes the summary's figures as JSON.

            Encrypted frames: --frame-key HEX (32 or 48 hex digits) makes every pile encrypt its frame \
            bodies with 3DES (flag 0x01) and decrypt the gateway's; --frame-key-mode, --frame-key-padding \
            and --frame-key-iv choose the rest. The gateway needs the same key for each pile \
            (PUT /v1/piles/{id}/key).

            TLS: --tls-ca CA.pem makes the piles connect with TLS (the gateway's pileTLSPort), trusting \
            that CA for the gateway's certificate (checked against the CA, not a host name); --tls-cert \
            and --tls-key present a client certificate (mutual TLS, pileTLSClientCA). Every pile presents \
            the same one, and the gateway admits only the pile its subject names: use it with --piles 1 \
            and --first-id that pile.

            Misbehaving pile: --misbehave SCENARIO opens one connection as pile --first-id instead of the \
            fleet and misbehaves for --duration seconds or until the gateway closes it, then prints what it \
            sent and how the gateway answered. Scenarios: garbage (random bytes), flood (logs in, then \
            heartbeats far above the frame rate limit), oversize (frames announcing the largest length whose \
            CRC never checks), bad-crc (login frames with a wrong CRC), before-login (heartbeats before any \
            login), slowloris (a login frame a byte at a time, never completed), never-read (logs in, stops \
            reading, and keeps sending heartbeats so the gateway has replies to write). --misbehave-rate sets \
            units (frames, garbage chunks, trickled bytes) per second.
            """
    )

    @Option(help: "Gateway pile port as host:port; a comma-separated list spreads the piles over several gateways.")
    var gateway: String = "127.0.0.1:8767"

    @Option(
        name: .customLong("gateway-assignment"),
        help: "How piles are spread over several gateways: round-robin (pile k -> gateway k mod n) or hash (of the pile id).")
    var gatewayAssignment: String = GatewayAssignment.roundRobin.rawValue

    @Flag(help: "With several --gateway: every reconnect goes to a random other gateway (the cluster behind a load balancer).")
    var failover = false

    @Option(help: "Worker processes to spread the piles over (each holds one open file per pile).")
    var workers: Int = 1

    /// Set by the parent of a `--workers` run: this process is that worker and prints JSON reports.
    @Option(name: .customLong("worker-index"), help: .hidden)
    var workerIndex: Int?

    @Option(help: "Fraction (0...1) of the piles that charge by themselves, session after session, each ending with a bill.")
    var charging: Double = 0

    @Option(name: .customLong("charging-session"), help: "Seconds a --charging session lasts (rounded up to --charging-realtime).")
    var chargingSession: Double = 60

    @Option(name: .customLong("charging-pause"), help: "Seconds between --charging sessions.")
    var chargingPause: Double = 10

    @Option(name: .customLong("charging-realtime"), help: "Seconds between charging 0x13 frames of a charging gun.")
    var chargingRealtime: Double = 15

    @Option(name: .customLong("bills-after"), help: "Seconds after the start before --bills-per-minute / --bills-in-flight begin.")
    var billsAfter: Double = 0

    @Option(help: "Number of piles.")
    var piles: Int = 100

    @Option(help: "Guns per pile (each heartbeats on its own).")
    var guns: Int = 2

    @Option(name: .customLong("first-id"), help: "First pile id (14 decimal digits); the others follow.")
    var firstID: UInt64 = 32_010_600_000_001

    @Option(name: .customLong("source-addresses"), help: "Spread connections over 127.0.0.1…127.0.0.N (0 = don't bind).")
    var sourceAddresses: Int = 1

    @Option(help: "New connections per second (for the whole run); 0 connects all piles at once.")
    var rate: Double = 1000

    @Option(help: "Seconds to run.")
    var duration: Double = 60

    @Option(help: "Heartbeat interval in seconds.")
    var heartbeat: Double = 10

    @Option(name: .customLong("bills-per-minute"), help: "Bills (0x3B) uploaded per minute across the fleet (the whole run).")
    var billsPerMinute: Double = 0

    @Option(name: .customLong("bills-in-flight"), help: "Closed-loop bill load: bills kept outstanding per pile (0 = off).")
    var billsInFlight: Int = 0

    @Option(name: .customLong("bill-retry"), help: "Seconds before a pile re-sends an unacknowledged bill.")
    var billRetry: Double = 30

    @Option(name: .customLong("bill-max-sends"), help: "Sends of one bill before the pile abandons it.")
    var billMaxSends: Int = 10

    @Option(name: .customLong("acked-bills-out"), help: "Append the trade serial of every bill acked with 0x40 to this file.")
    var ackedBillsOut: String?

    @Option(name: .customLong("drain-timeout"), help: "After --duration, stop new bills and wait up to this many seconds for outstanding ones.")
    var drainTimeout: Double = 0

    @Option(name: .customLong("summary-json"), help: "Write the summary's figures (logins, heartbeats, bills, errors) to this file as JSON.")
    var summaryJSON: String?

    @Option(name: .customLong("reconnect-min"), help: "Seconds before the first reconnect after a drop (doubles per failure).")
    var reconnectMin: Double = 1

    @Option(name: .customLong("reconnect-max"), help: "Longest reconnect delay in seconds.")
    var reconnectMax: Double = 30

    @Option(name: .customLong("report-interval"), help: "Seconds between progress lines.")
    var reportInterval: Double = 5

    @Option(name: .customLong("protocol-version"), help: "Login protocol version byte: 15 (V1.5) or 16 (V1.6).")
    var protocolVersion: UInt8 = 16

    @Option(name: .customLong("login-timeout"), help: "Seconds a pile waits for 0x02.")
    var loginTimeout: Double = 10

    @Option(name: .customLong("login-retry"), help: "Seconds before a pile retries a timed-out or rejected login.")
    var loginRetry: Double = 30

    @Option(help: "Event-loop threads (default: one per core).")
    var threads: Int = System.coreCount

    @Flag(name: .customLong("expect-all-login"), help: "Fail unless every pile is logged in at the end.")
    var expectAllLogin = false

    @Option(name: .customLong("frame-key"), help: "3DES key (32 or 48 hex digits): piles send encrypted frames (flag 0x01).")
    var frameKey: String?

    @Option(name: .customLong("frame-key-mode"), help: "Block mode for --frame-key: ecb or cbc.")
    var frameKeyMode: String = FrameCipher.Mode.ecb.rawValue

    @Option(name: .customLong("frame-key-padding"), help: "Padding for --frame-key: pkcs7 or zero.")
    var frameKeyPadding: String = FrameCipher.Padding.pkcs7.rawValue

    @Option(name: .customLong("frame-key-iv"), help: "CBC IV for --frame-key (16 hex digits; default zero).")
    var frameKeyIV: String?

    @Option(name: .customLong("tls-ca"), help: "Connect with TLS, trusting this CA (PEM) for the gateway's certificate.")
    var tlsCA: String?

    @Option(name: .customLong("tls-cert"), help: "Client certificate (PEM) every pile presents; needs --tls-ca and --tls-key.")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "Private key (PEM) of --tls-cert.")
    var tlsKey: String?

    @Option(help: "Run one misbehaving pile instead of the fleet: garbage, flood, oversize, bad-crc, before-login, slowloris or never-read.")
    var misbehave: String?

    @Option(name: .customLong("misbehave-rate"), help: "Units per second for --misbehave (default: the scenario's own).")
    var misbehaveRate: Double?

    /// The TLS client context of the --tls-* options; nil without --tls-ca.
    func tlsContext() throws -> NIOSSLContext? {
        guard let tlsCA else {
            guard tlsCert == nil && tlsKey == nil else { throw ValidationError("--tls-cert and --tls-key need --tls-ca") }
            return nil
        }
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .noHostnameVerification
        do {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(tlsCA))
            if let tlsCert, let tlsKey {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(tlsCert).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: tlsKey, format: .pem))
            }
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw ValidationError("--tls-ca/--tls-cert/--tls-key: \(error)")
        }
    }

    /// The cipher the piles encrypt with, from the --frame-key options; nil without --frame-key.
    func frameCipher() throws -> FrameCipher? {
        guard let frameKey else {
            guard frameKeyIV == nil else { throw ValidationError("--frame-key-iv needs --frame-key") }
            return nil
        }
        guard let mode = FrameCipher.Mode(rawValue: frameKeyMode) else {
            throw ValidationError("--frame-key-mode must be ecb or cbc, got '\(frameKeyMode)'")
        }
        guard let padding = FrameCipher.Padding(rawValue: frameKeyPadding) else {
            throw ValidationError("--frame-key-padding must be pkcs7 or zero, got '\(frameKeyPadding)'")
        }
        do {
            return try FrameCipher(hexKey: frameKey, mode: mode, padding: padding, hexIV: frameKeyIV)
        } catch {
            throw ValidationError("--frame-key: \(error)")
        }
    }

    func validate() throws {
        guard piles >= 0 else { throw ValidationError("--piles must be >= 0") }
        guard (1...99).contains(guns) else { throw ValidationError("--guns must be 1...99") }
        guard heartbeat > 0 else { throw ValidationError("--heartbeat must be > 0") }
        guard reportInterval > 0 else { throw ValidationError("--report-interval must be > 0") }
        guard duration >= 0 else { throw ValidationError("--duration must be >= 0") }
        guard sourceAddresses >= 0 && sourceAddresses <= 254 else {
            throw ValidationError("--source-addresses must be 0...254")
        }
        guard threads >= 1 else { throw ValidationError("--threads must be >= 1") }
        guard billsPerMinute >= 0 else { throw ValidationError("--bills-per-minute must be >= 0") }
        guard (0...1000).contains(billsInFlight) else { throw ValidationError("--bills-in-flight must be 0...1000") }
        guard billRetry > 0 else { throw ValidationError("--bill-retry must be > 0") }
        guard billMaxSends >= 1 else { throw ValidationError("--bill-max-sends must be >= 1") }
        guard drainTimeout >= 0 else { throw ValidationError("--drain-timeout must be >= 0") }
        guard reconnectMin > 0 && reconnectMax >= reconnectMin else {
            throw ValidationError("--reconnect-min must be > 0 and <= --reconnect-max")
        }
        guard loginTimeout > 0, loginRetry > 0 else { throw ValidationError("--login-timeout and --login-retry must be > 0") }
        // Every duration becomes Int64 nanoseconds: bounded here instead of trapping there.
        let times: [(String, Double)] = [
            ("--duration", duration), ("--heartbeat", heartbeat), ("--bill-retry", billRetry), ("--drain-timeout", drainTimeout),
            ("--reconnect-min", reconnectMin), ("--reconnect-max", reconnectMax), ("--report-interval", reportInterval),
            ("--login-timeout", loginTimeout), ("--login-retry", loginRetry), ("--charging-session", chargingSession),
            ("--charging-pause", chargingPause), ("--charging-realtime", chargingRealtime), ("--bills-after", billsAfter),
        ]
        for (name, value) in times where !(value.isFinite && value <= Self.maxSeconds) {
            throw ValidationError("\(name) must be at most \(Int(Self.maxSeconds)) seconds, got \(value)")
        }
        guard rate.isFinite, (0...10_000_000).contains(rate) else { throw ValidationError("--rate must be 0...10000000, got \(rate)") }
        guard billsPerMinute.isFinite, billsPerMinute <= 1e9 else {
            throw ValidationError("--bills-per-minute must be 0...1000000000, got \(billsPerMinute)")
        }
        guard String(firstID + UInt64(max(piles - 1, 0))).count <= 14 else {
            throw ValidationError("--first-id + --piles exceeds 14 digits")
        }
        _ = try Self.parseGateways(gateway)
        guard GatewayAssignment(rawValue: gatewayAssignment) != nil else {
            throw ValidationError(
                "--gateway-assignment must be \(GatewayAssignment.allCases.map(\.rawValue).joined(separator: " or ")), got '\(gatewayAssignment)'")
        }
        guard (1...Self.maxWorkers).contains(workers) else { throw ValidationError("--workers must be 1...\(Self.maxWorkers)") }
        if let workerIndex, !(0..<workers).contains(workerIndex) { throw ValidationError("--worker-index must be 0..<--workers") }
        let perProcess = Self.openFileLimit() - Self.filesKeptFree
        let share = PileShare.largest(piles: piles, workers: workers)
        guard misbehave != nil || share <= perProcess else {
            let needed = (piles + perProcess - 1) / max(perProcess, 1)
            throw ValidationError(
                "\(share) piles in one process, but a process may hold \(perProcess + Self.filesKeptFree) open files "
                    + "(ulimit -n): use --workers \(needed) or more")
        }
        guard misbehave == nil || workers == 1 else { throw ValidationError("--misbehave runs one pile: drop --workers") }
        guard charging.isFinite, (0...1).contains(charging) else { throw ValidationError("--charging must be 0...1, got \(charging)") }
        guard chargingSession > 0, chargingPause >= 0, chargingRealtime > 0 else {
            throw ValidationError("--charging-session and --charging-realtime must be > 0, --charging-pause >= 0")
        }
        guard billsAfter >= 0 else { throw ValidationError("--bills-after must be >= 0") }
        _ = try scenario()
        if let misbehaveRate, !(misbehaveRate.isFinite && misbehaveRate > 0 && misbehaveRate <= 1_000_000) {
            throw ValidationError("--misbehave-rate must be > 0 and <= 1000000, got \(misbehaveRate)")
        }
        _ = try frameCipher()
        _ = try tlsContext()
    }

    /// The most worker processes one run starts.
    static let maxWorkers = 64
    /// Open files a worker keeps for itself besides one per pile (event loops, pipes, the ack file).
    static let filesKeptFree = 200

    /// The open files this process may hold (RLIMIT_NOFILE), after raising the soft limit to the
    /// hard one; workers inherit it. 1024 when it cannot be read.
    static func openFileLimit() -> Int {
        #if os(Linux)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        var rl = rlimit()
        guard getrlimit(resource, &rl) == 0 else { return 1024 }
        if rl.rlim_cur < rl.rlim_max {
            var raised = rl
            raised.rlim_cur = rl.rlim_max
            #if canImport(Darwin)
            raised.rlim_cur = min(rl.rlim_max, rlim_t(OPEN_MAX))
            #endif
            if setrlimit(resource, &raised) == 0 { rl = raised }
        }
        return rl.rlim_cur >= rlim_t(Int.max / 2) ? Int.max / 2 : Int(rl.rlim_cur)
    }

    /// `--gateway`: one host:port, or several separated by commas (at most 256).
    static func parseGateways(_ text: String) throws -> [(host: String, port: Int)] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        guard !parts.isEmpty, parts.count <= 256 else { throw ValidationError("--gateway takes 1 to 256 addresses") }
        return try parts.map { try parseGateway($0) }
    }

    static func parseGateway(_ text: String) throws -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else { throw ValidationError("--gateway must be host:port, got '\(text)'") }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    /// The longest duration an option may give (about 11 days): well inside Int64 nanoseconds.
    static let maxSeconds: Double = 1_000_000

    static func seconds(_ s: Double) -> TimeAmount { .nanoseconds(Int64(s * 1e9)) }

    /// The --misbehave scenario; nil without the option.
    func scenario() throws -> Misbehaviour? {
        guard let misbehave else { return nil }
        guard let scenario = Misbehaviour(rawValue: misbehave) else {
            throw ValidationError(
                "--misbehave must be one of \(Misbehaviour.allCases.map(\.rawValue).joined(separator: ", ")), got '\(misbehave)'")
        }
        return scenario
    }

    func run() async throws {
        if let scenario = try scenario() {
            let (host, port) = try Self.parseGateway(gateway)
            let target = try SocketAddress.makeAddressResolvingHost(host, port: port)
            guard let pileID = PileID(String(firstID)) else { throw ValidationError("--first-id must be 14 digits") }
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            Self.out("simulate: misbehaving (\(scenario.rawValue)) as \(firstID) -> \(host):\(port) for up to \(duration) s")
            let report = try await MisbehavingPile.run(
                scenario, target: target, pileID: pileID, rate: misbehaveRate,
                duration: .nanoseconds(Int64(duration * 1e9)), group: group)
            try? await group.shutdownGracefully()
            Self.out(report.line)
            return
        }
        _ = Self.openFileLimit()
        if workers > 1 && workerIndex == nil {
            try await SimulateWorkerPool(command: self).run()
            return
        }
        try await runFleet()
    }

    /// Runs this process's fleet: the whole run, or with `--worker-index` one worker's share, whose
    /// reports go to stdout as JSON lines (and everything else to stderr) for the parent.
    func runFleet() async throws {
        let worker = workerIndex
        let share = worker.map { PileShare.of(piles: piles, workers: workers, index: $0) } ?? PileShare(offset: 0, count: piles)
        let say: @Sendable (String) -> Void = worker == nil ? Self.out : Self.err
        let gateways = try Self.parseGateways(gateway)
        let targets = try gateways.map { try SocketAddress.makeAddressResolvingHost($0.host, port: $0.port) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)

        var config = PileFleetConfig(targets: targets, pileCount: share.count, gunCount: guns)
        config.firstPileID = firstID + UInt64(share.offset)
        config.runIndexOffset = share.offset
        config.assignment = GatewayAssignment(rawValue: gatewayAssignment) ?? .roundRobin
        config.failover = failover
        config.sourceAddressCount = sourceAddresses
        config.connectRate = rate > 0 ? max(share.part(of: rate, piles: piles), 1) : nil
        config.chargingFraction = charging
        config.chargingCycle = ChargingCycle(sessionLength: Self.seconds(chargingSession), pause: Self.seconds(chargingPause))
        config.template.chargingRealtimeInterval = Self.seconds(chargingRealtime)
        config.template.heartbeatInterval = Self.seconds(heartbeat)
        config.template.protocolVersion = protocolVersion
        config.template.loginTimeout = Self.seconds(loginTimeout)
        config.template.loginRetryDelay = Self.seconds(loginRetry)
        config.template.billRetryInterval = Self.seconds(billRetry)
        config.template.billMaxSends = billMaxSends
        config.template.frameCipher = try frameCipher()
        config.template.tls = try tlsContext()
        config.template.reconnect = ReconnectPolicy(
            enabled: true, initialDelay: Self.seconds(reconnectMin), maxDelay: Self.seconds(reconnectMax), multiplier: 2,
            jitter: 0.2)
        let billLoad = BillLoadControl(enabled: billsAfter == 0)
        config.template.billsInFlight = billsInFlight
        config.template.billLoad = billLoad
        let ackedFile: AckedBillsFile?
        if let path = ackedBillsOut {
            do {
                ackedFile = try AckedBillsFile(path: path)
            } catch {
                say("simulate: cannot open --acked-bills-out \(path): \(error)")
                throw ExitCode(2)
            }
            config.template.onBillAcked = { _, serial, _, _ in ackedFile?.append(serial) }
        } else {
            ackedFile = nil
        }
        defer { ackedFile?.close() }

        let fleet = try PileFleet(config: config, group: group)
        let begin = ContinuousClock.now
        let describedGateways = gateways.count == 1 ? "\(gateways[0].host):\(gateways[0].port)" : "\(gateways.count) gateways (\(config.assignment.rawValue))"
        say(
            "simulate: \(worker.map { "worker \($0): " } ?? "")\(share.count) piles x \(guns) guns -> \(describedGateways), "
                + "ids \(config.firstPileID)…, \(sourceAddresses) source address(es), "
                + "rate \(config.connectRate.map { "\(Int($0))/s" } ?? "all at once"), \(duration) s")

        var report = SimulateReport(
            kind: .progress, worker: worker ?? 0, piles: share.count, startedAt: Date().timeIntervalSince1970,
            counters: fleet.counters.snapshot())
        let starter = Task { await fleet.start() }
        let hasBillLoad = billsPerMinute > 0 || billsInFlight > 0
        let billsPerSecond = share.part(of: billsPerMinute, piles: piles) / 60
        var biller: Task<Void, Never>?
        let parent = getppid()

        // Samples the counters every 50 ms: the moment all piles are in, the last 0x40, the start
        // of the bill load, and a report line every --report-interval.
        let end = begin + .nanoseconds(Int64(duration * 1e9))
        let billsBegin = begin + .nanoseconds(Int64(billsAfter * 1e9))
        let step = Duration.nanoseconds(Int64(reportInterval * 1e9))
        var nextReport = begin + step
        var lastAcked = 0
        func sample(_ line: (SimulatorCounters.Snapshot) -> String) {
            let now = ContinuousClock.now
            let s = fleet.counters.snapshot()
            let wall = Date().timeIntervalSince1970
            report.counters = s
            if report.allLoggedInAt == nil && share.count > 0 && s.loggedIn >= share.count {
                report.allLoggedInAt = wall
                if worker == nil { say(String(format: "simulate: all %d piles logged in after %.2f s", share.count, wall - report.startedAt)) }
            }
            if s.billsAcked != lastAcked {
                lastAcked = s.billsAcked
                report.lastBillAckAt = wall
            }
            if now >= nextReport {
                if worker == nil { say(line(s)) } else { Self.out(report.line()) }
                nextReport = nextReport + step
            }
            if worker != nil && getppid() != parent {
                Self.err("simulate: worker \(worker ?? 0): the parent process is gone; stopping")
                Foundation.exit(1)
            }
        }
        while ContinuousClock.now < end {
            try? await Task.sleep(until: min(ContinuousClock.now + .milliseconds(50), end), clock: .continuous)
            if hasBillLoad && report.billsStartedAt == nil && ContinuousClock.now >= billsBegin {
                report.billsStartedAt = Date().timeIntervalSince1970
                report.billsAckedBeforeLoad = fleet.counters.billsAcked.load(ordering: .relaxed)
                if billsInFlight > 0 && billsAfter > 0 {
                    billLoad.start()
                    fleet.refillBills()
                }
                if billsPerSecond > 0 { biller = Self.openLoopBills(fleet, perSecond: billsPerSecond) }
            }
            sample { Self.progress($0, elapsed: ContinuousClock.now - begin) }
        }

        biller?.cancel()
        billLoad.stop()
        await biller?.value
        if drainTimeout > 0 {
            say("simulate: no new bills; waiting up to \(drainTimeout) s for \(fleet.counters.snapshot().billsPending) outstanding bill(s)")
            let drainEnd = ContinuousClock.now + .nanoseconds(Int64(drainTimeout * 1e9))
            while fleet.counters.snapshot().billsPending > 0 && ContinuousClock.now < drainEnd {
                try? await Task.sleep(for: .milliseconds(50))
                sample { "drain: " + Self.progress($0, elapsed: ContinuousClock.now - begin) }
            }
        }
        starter.cancel()
        await starter.value
        nextReport = .now + .seconds(1_000_000)
        sample { _ in "" }
        let (phases, reasons) = await fleet.breakdown()
        report.kind = .summary
        report.phases = Dictionary(phases.map { ($0.key.rawValue, $0.value) }, uniquingKeysWith: +)
        report.lastCloseReasons = Dictionary(reasons.map { ($0.key, $0.value) }, uniquingKeysWith: +)
        let elapsed = ContinuousClock.now - begin
        if worker != nil { Self.out(report.line()) }
        await fleet.stop()
        try? await group.shutdownGracefully()
        ackedFile?.close()
        report.ackFileErrors = ackedFile?.errors ?? 0
        if let worker {
            if report.ackFileErrors > 0 {
                Self.err("simulate: worker \(worker): \(report.ackFileErrors) write(s) to --acked-bills-out failed")
                throw ExitCode(1)
            }
            return
        }

        let totals = try SimulateTotals(reports: [report], workers: 1, piles: piles, runStartedAt: report.startedAt)
        try finish(totals, elapsed: elapsed)
    }

    /// Prints the run's summary, writes --summary-json, and fails the run as the options ask.
    func finish(_ totals: SimulateTotals, elapsed: Duration) throws {
        Self.out(totals.summary(elapsed: elapsed))
        if let path = summaryJSON {
            do {
                try Data((totals.json(elapsed: elapsed) + "\n").utf8).write(to: URL(fileURLWithPath: path))
            } catch {
                Self.out("simulate: cannot write --summary-json \(path): \(error)")
            }
        }
        if !totals.workerFailures.isEmpty {
            Self.out("simulate: FAILED: \(totals.workerFailures.count) worker(s) failed")
            throw ExitCode(1)
        }
        if totals.ackFileErrors > 0 {
            Self.out("simulate: FAILED: \(totals.ackFileErrors) write(s) to --acked-bills-out failed")
            throw ExitCode(1)
        }
        if piles > 0 && totals.counters.loginsAccepted == 0 {
            Self.out("simulate: FAILED: no pile logged in")
            throw ExitCode(1)
        }
        if expectAllLogin && totals.counters.loggedIn < piles {
            Self.out("simulate: FAILED: \(totals.counters.loggedIn) of \(piles) piles logged in at the end")
            throw ExitCode(1)
        }
    }

    /// Open-loop bills: `perSecond` across the fleet, paced by elapsed time rather than one sleep
    /// per bill, so high rates hold too.
    static func openLoopBills(_ fleet: PileFleet, perSecond: Double) -> Task<Void, Never> {
        Task {
            let tick = Duration.nanoseconds(Int64(min(1e9 / perSecond, 5e6)))
            let start = ContinuousClock.now
            var sent = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: tick)
                if Task.isCancelled { break }
                let due = Int(secondsOf(ContinuousClock.now - start) * perSecond)
                while sent < due {
                    fleet.uploadRandomBill()
                    sent += 1
                }
            }
        }
    }

    static func progress(_ s: SimulatorCounters.Snapshot, elapsed: Duration) -> String {
        let t = String(format: "%.0f", Double(elapsed.components.seconds))
        return "t=\(t)s connected=\(s.connected) loggedIn=\(s.loggedIn) logins=\(s.loginsAccepted) "
            + "rejected=\(s.loginsRejected) loginTimeouts=\(s.loginTimeouts) hbSent=\(s.heartbeatsSent) "
            + "hbAcked=\(s.heartbeatsAcked) billsAcked=\(s.billsAcked)/\(s.billsQueued) billsPending=\(s.billsPending) "
            + "billAckP99=\(fine(s.billAckLatency.percentileMs(0.99))) reconnects=\(s.reconnects) "
            + "connectFailures=\(s.connectFailures) loginP50=\(ms(s.loginLatency.percentileMs(0.5))) "
            + "loginP99=\(ms(s.loginLatency.percentileMs(0.99)))"
    }

    static func summary(_ s: SimulatorCounters.Snapshot, piles: Int, elapsed: Duration) -> String {
        let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return """
            summary after \(String(format: "%.1f", secs)) s:
              piles            \(piles)
              connected now    \(s.connected)
              logged in now    \(s.loggedIn)
              connect attempts \(s.connectAttempts) (failures \(s.connectFailures))
              logins           \(s.loginsAccepted) accepted, \(s.loginsRejected) rejected, \(s.loginTimeouts) timed out
              login latency    mean \(String(format: "%.2f", s.loginLatency.meanMs)) ms, p50 \(ms(s.loginLatency.percentileMs(0.5))), p99 \(ms(s.loginLatency.percentileMs(0.99))), max \(String(format: "%.1f", s.loginLatency.maxMs)) ms
              heartbeats       \(s.heartbeatsSent) sent, \(s.heartbeatsAcked) acked, \(s.heartbeatTimeouts) link drops
              billing models   \(s.billingModelsReceived) received
              bills            \(s.billsQueued) queued, \(s.billFramesSent) frames sent, \(s.billsAcked) acked, \(s.billsAbandoned) abandoned, \(s.billsPending) still pending
              bill-ack latency first send -> 0x40: mean \(String(format: "%.2f", s.billAckLatency.meanMs)) ms, p50 \(fine(s.billAckLatency.percentileMs(0.5))), p99 \(fine(s.billAckLatency.percentileMs(0.99))), max \(String(format: "%.1f", s.billAckLatency.maxMs)) ms (\(s.billAckLatency.count) bills)
              commands         \(s.commandsAnswered) answered
              reconnects       \(s.reconnects) (closes \(s.closes))
              frames           \(s.framesSent) sent, \(s.framesReceived) received, \(s.parseErrors) parse errors
            """
    }

    static func secondsOf(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// A bucketed percentile with sub-millisecond resolution ("<=1.25ms").
    static func fine(_ value: Double?) -> String {
        guard let value else { return "-" }
        return "<=" + String(format: value < 10 ? "%.2f" : "%.0f", value) + "ms"
    }

    static func ms(_ value: Double?) -> String {
        guard let value else { return "-" }
        return "<=\(Int(value.rounded(.up)))ms"
    }

    /// Writes a line straight to stdout so progress shows live even when piped.
    @Sendable static func out(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// Writes a line straight to stderr (a worker's human lines: its stdout carries its reports).
    @Sendable static func err(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
