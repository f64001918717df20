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

            Bills (0x3B): --bills-per-minute uploads bills at a steady rate across the fleet (open loop); \
            --bills-in-flight N keeps N bills outstanding per pile, queuing a new one as each is \
            acknowledged (closed loop: as fast as the 0x40s come). A pile re-sends an unacknowledged \
            bill every --bill-retry seconds, also after reconnecting, and abandons it after \
            --bill-max-sends sends. --acked-bills-out appends the trade serial of every bill a pile got \
            0x40 for, one per line, written as each 0x40 arrives. With --drain-timeout, new bills stop \
            after --duration and the run waits up to that long for the outstanding ones to be acked. \
            The summary gives the bill-ack latency (first send of a bill to its 0x40) p50/p99/max; \
            --summary-json writes the bill figures as JSON.

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

    @Option(help: "Gateway pile port as host:port.")
    var gateway: String = "127.0.0.1:8767"

    @Option(help: "Number of piles.")
    var piles: Int = 100

    @Option(help: "Guns per pile (each heartbeats on its own).")
    var guns: Int = 2

    @Option(name: .customLong("first-id"), help: "First pile id (14 decimal digits); the others follow.")
    var firstID: UInt64 = 32_010_600_000_001

    @Option(name: .customLong("source-addresses"), help: "Spread connections over 127.0.0.1…127.0.0.N (0 = don't bind).")
    var sourceAddresses: Int = 1

    @Option(help: "New connections per second; 0 connects all piles at once.")
    var rate: Double = 1000

    @Option(help: "Seconds to run.")
    var duration: Double = 60

    @Option(help: "Heartbeat interval in seconds.")
    var heartbeat: Double = 10

    @Option(name: .customLong("bills-per-minute"), help: "Bills (0x3B) uploaded per minute across the fleet.")
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

    @Option(name: .customLong("summary-json"), help: "Write the bill figures of the summary to this file as JSON.")
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
            ("--login-timeout", loginTimeout), ("--login-retry", loginRetry),
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
        _ = try Self.parseGateway(gateway)
        _ = try scenario()
        if let misbehaveRate, !(misbehaveRate.isFinite && misbehaveRate > 0 && misbehaveRate <= 1_000_000) {
            throw ValidationError("--misbehave-rate must be > 0 and <= 1000000, got \(misbehaveRate)")
        }
        _ = try frameCipher()
        _ = try tlsContext()
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
        let (host, port) = try Self.parseGateway(gateway)
        let target = try SocketAddress.makeAddressResolvingHost(host, port: port)
        if let scenario = try scenario() {
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
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)

        var config = PileFleetConfig(target: target, pileCount: piles, gunCount: guns)
        config.firstPileID = firstID
        config.sourceAddressCount = sourceAddresses
        config.connectRate = rate > 0 ? rate : nil
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
        let billLoad = BillLoadControl()
        config.template.billsInFlight = billsInFlight
        config.template.billLoad = billLoad
        let ackedFile: AckedBillsFile?
        if let path = ackedBillsOut {
            do {
                ackedFile = try AckedBillsFile(path: path)
            } catch {
                Self.out("simulate: cannot open --acked-bills-out \(path): \(error)")
                throw ExitCode(2)
            }
            config.template.onBillAcked = { _, serial, _, _ in ackedFile?.append(serial) }
        } else {
            ackedFile = nil
        }
        defer { ackedFile?.close() }

        let fleet = try PileFleet(config: config, group: group)
        let begin = ContinuousClock.now
        Self.out(
            "simulate: \(piles) piles x \(guns) guns -> \(host):\(port), ids \(firstID)…, "
                + "\(sourceAddresses) source address(es), rate \(rate > 0 ? "\(rate)/s" : "all at once"), "
                + "\(duration) s")

        let starter = Task { await fleet.start() }
        let billsPerMinute = self.billsPerMinute
        let biller = Task {
            guard billsPerMinute > 0 else { return }
            // Paced by elapsed time rather than one sleep per bill, so high rates hold too.
            let perSecond = billsPerMinute / 60
            let tick = Duration.nanoseconds(Int64(min(1e9 / perSecond, 5e6)))
            let start = ContinuousClock.now
            var sent = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: tick)
                if Task.isCancelled { break }
                let elapsed = ContinuousClock.now - start
                let due = Int(Self.secondsOf(elapsed) * perSecond)
                while sent < due {
                    fleet.uploadRandomBill()
                    sent += 1
                }
            }
        }

        let end = begin + .nanoseconds(Int64(duration * 1e9))
        let step = Duration.nanoseconds(Int64(reportInterval * 1e9))
        var nextReport = begin + step
        while ContinuousClock.now < end {
            let wake = min(nextReport, end)
            try? await Task.sleep(until: wake, clock: .continuous)
            if ContinuousClock.now >= nextReport {
                Self.out(Self.progress(fleet.counters.snapshot(), elapsed: ContinuousClock.now - begin))
                nextReport = nextReport + step
            }
        }

        biller.cancel()
        billLoad.stop()
        await biller.value
        if drainTimeout > 0 {
            let before = fleet.counters.snapshot()
            Self.out("simulate: no new bills; waiting up to \(drainTimeout) s for \(before.billsPending) outstanding bill(s)")
            let drainEnd = ContinuousClock.now + .nanoseconds(Int64(drainTimeout * 1e9))
            var nextLine = ContinuousClock.now + step
            while fleet.counters.snapshot().billsPending > 0 && ContinuousClock.now < drainEnd {
                try? await Task.sleep(for: .milliseconds(100))
                if ContinuousClock.now >= nextLine {
                    Self.out("drain: " + Self.progress(fleet.counters.snapshot(), elapsed: ContinuousClock.now - begin))
                    nextLine = nextLine + step
                }
            }
        }
        starter.cancel()
        await starter.value
        let final = fleet.counters.snapshot()
        Self.out(Self.summary(final, piles: piles, elapsed: ContinuousClock.now - begin))
        let (phases, reasons) = await fleet.breakdown()
        Self.out("  pile phases      " + phases.sorted { $0.value > $1.value }.map { "\($0.key.rawValue)=\($0.value)" }.joined(separator: " "))
        if !reasons.isEmpty {
            Self.out("  last close       " + reasons.sorted { $0.value > $1.value }.prefix(5).map { "\($0.key) (\($0.value))" }.joined(separator: "; "))
        }
        await fleet.stop()
        try? await group.shutdownGracefully()
        ackedFile?.close()
        if let path = summaryJSON {
            let json = Self.billJSON(final, elapsed: ContinuousClock.now - begin, ackFileErrors: ackedFile?.errors ?? 0)
            do {
                try Data((json + "\n").utf8).write(to: URL(fileURLWithPath: path))
            } catch {
                Self.out("simulate: cannot write --summary-json \(path): \(error)")
            }
        }
        if let ackedFile, ackedFile.errors > 0 {
            Self.out("simulate: FAILED: \(ackedFile.errors) write(s) to --acked-bills-out failed")
            throw ExitCode(1)
        }

        if piles > 0 && final.loginsAccepted == 0 {
            Self.out("simulate: FAILED: no pile logged in")
            throw ExitCode(1)
        }
        if expectAllLogin && final.loggedIn < piles {
            Self.out("simulate: FAILED: \(final.loggedIn) of \(piles) piles logged in at the end")
            throw ExitCode(1)
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

    /// The bill figures as one JSON object (percentiles are bucket upper bounds, in ms).
    static func billJSON(_ s: SimulatorCounters.Snapshot, elapsed: Duration, ackFileErrors: Int) -> String {
        func num(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "null" }
        let l = s.billAckLatency
        return "{\"elapsedSeconds\":\(String(format: "%.3f", secondsOf(elapsed))),\"billsQueued\":\(s.billsQueued),"
            + "\"billFramesSent\":\(s.billFramesSent),\"billsAcked\":\(s.billsAcked),\"billsAbandoned\":\(s.billsAbandoned),"
            + "\"billsPending\":\(s.billsPending),\"ackLatencyCount\":\(l.count),\"ackLatencyMeanMs\":\(num(l.meanMs)),"
            + "\"ackLatencyP50Ms\":\(num(l.percentileMs(0.5))),\"ackLatencyP90Ms\":\(num(l.percentileMs(0.9))),"
            + "\"ackLatencyP99Ms\":\(num(l.percentileMs(0.99))),\"ackLatencyMaxMs\":\(num(l.maxMs)),"
            + "\"reconnects\":\(s.reconnects),\"loginsAccepted\":\(s.loginsAccepted),\"ackFileErrors\":\(ackFileErrors)}"
    }

    static func ms(_ value: Double?) -> String {
        guard let value else { return "-" }
        return "<=\(Int(value.rounded(.up)))ms"
    }

    /// Writes a line straight to stdout so progress shows live even when piped.
    static func out(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}
