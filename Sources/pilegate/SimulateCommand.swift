import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import PileSim
import YKC

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
        guard String(firstID + UInt64(max(piles - 1, 0))).count <= 14 else {
            throw ValidationError("--first-id + --piles exceeds 14 digits")
        }
        _ = try Self.parseGateway(gateway)
    }

    static func parseGateway(_ text: String) throws -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else { throw ValidationError("--gateway must be host:port, got '\(text)'") }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    static func seconds(_ s: Double) -> TimeAmount { .nanoseconds(Int64(s * 1e9)) }

    func run() async throws {
        let (host, port) = try Self.parseGateway(gateway)
        let target = try SocketAddress.makeAddressResolvingHost(host, port: port)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)

        var config = PileFleetConfig(target: target, pileCount: piles, gunCount: guns)
        config.firstPileID = firstID
        config.sourceAddressCount = sourceAddresses
        config.connectRate = rate > 0 ? rate : nil
        config.template.heartbeatInterval = Self.seconds(heartbeat)
        config.template.protocolVersion = protocolVersion
        config.template.loginTimeout = Self.seconds(loginTimeout)
        config.template.loginRetryDelay = Self.seconds(loginRetry)

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
            let period = Duration.nanoseconds(Int64(60e9 / billsPerMinute))
            while !Task.isCancelled {
                try? await Task.sleep(for: period)
                if Task.isCancelled { break }
                fleet.uploadRandomBill()
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
            + "hbAcked=\(s.heartbeatsAcked) billsAcked=\(s.billsAcked)/\(s.billsQueued) reconnects=\(s.reconnects) "
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
              bills            \(s.billsQueued) queued, \(s.billFramesSent) frames sent, \(s.billsAcked) acked, \(s.billsAbandoned) abandoned
              commands         \(s.commandsAnswered) answered
              reconnects       \(s.reconnects) (closes \(s.closes))
              frames           \(s.framesSent) sent, \(s.framesReceived) received, \(s.parseErrors) parse errors
            """
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
