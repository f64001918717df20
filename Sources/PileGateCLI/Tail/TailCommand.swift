import ArgumentParser
import Foundation
import HummingbirdWSClient
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// `pilegate tail`: a backend subscriber for operations and measurement.
///
/// It connects to the gateway's `/v1/events` WebSocket like a backend service instance,
/// subscribes, acks every event, and either prints each event (`--print`) or reports every
/// `--stats-interval` seconds how many events per second arrived and the delivery latency
/// (arrival time − the event's `receivedAt`, both from this machine's wall clock, so only
/// meaningful when tail runs on the gateway's host). Messages are read by `TailScan` on
/// `JSONScanner` and `receivedAt` by a fixed-format parser (no DateFormatter), so measuring costs
/// little more than acking.
struct TailCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Subscribe to a gateway's backend events, ack them, print them or measure rate and latency.",
        discussion: """
            Connects to <api>/v1/events, sends one subscribe message (--service, --instance, --lane, --events, \
            --max-in-flight) and acks every event it receives. With --print each event's JSON is written to \
            stdout as one line (reports go to stderr). Without it, a line is printed every --stats-interval \
            seconds: events/s received and delivery latency p50/p99/max, where latency = arrival time − \
            receivedAt (same machine clock; receivedAt has microsecond resolution). With --duration the subscriber closes after that many seconds and \
            prints a summary as one JSON line; --warmup excludes the first seconds from the summary. Exits 1 \
            if the connection or the subscription fails.
            """)

    @Option(help: "Gateway admin API base URL (http://host:port); the WebSocket is <api>/v1/events.")
    var api: String = "http://127.0.0.1:8780"

    @Option(help: "A bearer token with events:subscribe (or $PILEGATE_TOKEN).")
    var token: String?

    @Option(help: ArgumentHelp("CA bundle (PEM) to trust for a wss API (or $PILEGATE_CACERT).", valueName: "FILE"))
    var cacert: String?

    @Option(help: ArgumentHelp("Client certificate (PEM) for mutual TLS (or $PILEGATE_CERT).", valueName: "FILE"))
    var cert: String?

    @Option(help: ArgumentHelp("The client certificate's private key (PEM; or $PILEGATE_KEY).", valueName: "FILE"))
    var key: String?

    @Option(help: "Service name to subscribe as.")
    var service: String = "tail"

    @Option(help: "Instance name within the service.")
    var instance: String = "tail-1"

    @Option(help: "Lane (\"\" = base lane).")
    var lane: String = ""

    @Option(help: "Comma-separated event names, or * for all.")
    var events: String = "*"

    @Option(name: .customLong("max-in-flight"), help: "Unacked events the gateway may have outstanding (1...100000).")
    var maxInFlight: Int?

    @Flag(help: "Print every event's JSON (one line each) to stdout.")
    var print = false

    @Flag(
        help: """
            Subscribe durably: the outbox then keeps this service's durable events (bills) while it is away. \
            Without it, tail sees durable events live and pins nothing.
            """)
    var durable = false

    @Option(help: "Seconds to run; 0 runs until interrupted.")
    var duration: Double = 0

    @Option(help: "Seconds at the start left out of the final summary (latency and rate).")
    var warmup: Double = 0

    @Option(name: .customLong("stats-interval"), help: "Seconds between report lines.")
    var statsInterval: Double = 5

    @Option(
        name: .customLong("ack-batch"),
        help: """
            Acks sent together in one {"type":"ack","ids":[…]} message: when this many are waiting, or 2 ms \
            after the first (1 acks each event on its own).
            """)
    var ackBatch: Int = 64

    func validate() throws {
        guard duration >= 0, warmup >= 0 else { throw ValidationError("--duration and --warmup must be >= 0") }
        guard statsInterval > 0 else { throw ValidationError("--stats-interval must be > 0") }
        // They become Int64 micro- and nanoseconds: bounded here instead of trapping there.
        for (name, value) in [("--duration", duration), ("--warmup", warmup), ("--stats-interval", statsInterval)]
        where !(value.isFinite && value <= 1_000_000) {
            throw ValidationError("\(name) must be at most 1000000 seconds, got \(value)")
        }
        if let maxInFlight, !(1...100_000).contains(maxInFlight) {
            throw ValidationError("--max-in-flight must be 1...100000")
        }
        guard (1...10_000).contains(ackBatch) else { throw ValidationError("--ack-batch must be 1...10000") }
        _ = try Self.webSocketURL(api)
        let names = events.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !names.isEmpty else { throw ValidationError("--events must name at least one event or *") }
    }

    /// `<api>/v1/events` with the scheme made ws/wss (none given: ws); an API without a host is refused.
    static func webSocketURL(_ api: String) throws -> String {
        var scheme = "ws://"
        var rest = Substring(api)
        for (given, ws) in [("http://", "ws://"), ("https://", "wss://"), ("ws://", "ws://"), ("wss://", "wss://")]
        where api.hasPrefix(given) {
            scheme = ws
            rest = api.dropFirst(given.count)
            break
        }
        while rest.hasSuffix("/") { rest.removeLast() }
        guard !rest.isEmpty else { throw ValidationError("--api must be http://host:port, got '\(api)'") }
        return scheme + rest + "/v1/events"
    }

    func subscribeMessage() -> String {
        let names = events.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let list = names.contains("*") ? [#""*""#] : names.map { Self.jsonString($0) }
        let credit = maxInFlight.map { #","maxInFlight":\#($0)"# } ?? ""
        return #"{"type":"subscribe","service":\#(Self.jsonString(service)),"instance":\#(Self.jsonString(instance)),"#
            + #""lane":\#(Self.jsonString(lane)),"events":[\#(list.joined(separator: ","))]\#(credit),"durable":\#(durable)}"#
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where c.value < 0x20: out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }

    /// All the ids waiting in `pending` once there are at least `count` (they are taken), else nil.
    static func takeAcks(_ pending: NIOLockedValueBox<[String]>, atLeast count: Int) -> [String]? {
        pending.withLockedValue { p -> [String]? in
            guard !p.isEmpty, p.count >= count else { return nil }
            defer { p.removeAll(keepingCapacity: true) }
            return p
        }
    }

    /// `{"type":"ack","ids":[…]}` for `ids` (docs/BACKEND-PROTOCOL.md, "ack").
    static func batchAck(_ ids: [String]) -> String {
        #"{"type":"ack","ids":["# + ids.map(jsonString).joined(separator: ",") + "]}"
    }

    func run() async throws {
        let url = try Self.webSocketURL(api)
        let stats = NIOLockedValueBox(TailStats())
        let outcome = NIOLockedValueBox(TailOutcome())
        let printEvents = self.print
        let subscribe = subscribeMessage()
        let duration = self.duration
        let interval = self.statsInterval
        let ackBatch = self.ackBatch
        // Ids received and not yet acked (with --ack-batch above 1).
        let pendingAcks = NIOLockedValueBox<[String]>([])
        let warmupEnd = TailClock.nowMicros() + Int64(warmup * 1e6)
        let begin = TailClock.nowMicros()
        var logger = Logger(label: "pilegate-tail")
        logger.logLevel = .critical
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var wsConfig = WebSocketClientConfiguration()
        wsConfig.maxFrameSize = 1 << 22
        if let secret = token ?? ProcessInfo.processInfo.environment["PILEGATE_TOKEN"], !secret.isEmpty {
            wsConfig.additionalHeaders[.authorization] = "Bearer \(secret)"
        }

        let env = ProcessInfo.processInfo.environment
        let tlsOptions = TLSHTTPClient.Options(
            caFile: cacert ?? env["PILEGATE_CACERT"], certFile: cert ?? env["PILEGATE_CERT"], keyFile: key ?? env["PILEGATE_KEY"])
        // A wss URL with an IP address cannot carry SNI: name the host (e.g. localhost).
        let tls = tlsOptions.isEmpty ? nil : try TLSHTTPClient.configuration(tlsOptions)
        let client = WebSocketClient(
            url: url, configuration: wsConfig, tlsConfiguration: tls, eventLoopGroup: group, logger: logger
        ) { inbound, outbound, _ in
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                try await outbound.write(.text(subscribe))
                if duration > 0 {
                    tasks.addTask {
                        try await Task.sleep(nanoseconds: UInt64(duration * 1e9))
                        // The acks still waiting for their batch go first.
                        if let ids = TailCommand.takeAcks(pendingAcks, atLeast: 1) {
                            try await outbound.write(.text(TailCommand.batchAck(ids)))
                        }
                        try await outbound.close(.normalClosure, reason: "tail --duration elapsed")
                    }
                }
                if ackBatch > 1 {
                    // Acks a batch 2 ms after its first id at the latest.
                    tasks.addTask {
                        while !Task.isCancelled {
                            try await Task.sleep(nanoseconds: 2_000_000)
                            if let ids = TailCommand.takeAcks(pendingAcks, atLeast: 1) {
                                try await outbound.write(.text(TailCommand.batchAck(ids)))
                            }
                        }
                    }
                }
                if !printEvents {
                    tasks.addTask {
                        let step = Int64(interval * 1e6)
                        var last = TailClock.nowMicros()
                        var next = last + step
                        while !Task.isCancelled {
                            try await Task.sleep(nanoseconds: UInt64(max(next - TailClock.nowMicros(), 1_000)) * 1_000)
                            let now = TailClock.nowMicros()
                            let window = stats.withLockedValue { $0.takeWindow() }
                            TailCommand.out(window.line(elapsed: Double(now - begin) / 1e6, seconds: Double(now - last) / 1e6))
                            last = now
                            next += step
                            if next <= now { next = now + step }  // a late wake-up skips windows rather than printing empty ones
                        }
                    }
                }
                for try await message in inbound.messages(maxSize: 1 << 22) {
                    guard case .text(let text) = message else { continue }
                    let arrival = TailClock.nowMicros()
                    var scan = TailScan()
                    var copy = text
                    copy.withUTF8 { scan = TailScan.parse($0) }
                    switch scan.kind {
                    case .event:
                        if let id = scan.id {
                            if ackBatch == 1 {
                                try await outbound.write(.text(#"{"type":"ack","id":\#(TailCommand.jsonString(id))}"#))
                            } else {
                                pendingAcks.withLockedValue { $0.append(id) }
                                if let ids = TailCommand.takeAcks(pendingAcks, atLeast: ackBatch) {
                                    try await outbound.write(.text(TailCommand.batchAck(ids)))
                                }
                            }
                        }
                        let latency = scan.receivedAtMicros.map { arrival - $0 }
                        stats.withLockedValue { $0.record(latency: latency, countInSummary: arrival >= warmupEnd, at: arrival) }
                        if printEvents { TailCommand.out(text) }
                    case .subscribed:
                        outcome.withLockedValue { $0.subscribed = true }
                        TailCommand.err("tail: subscribed: \(text)")
                    case .error:
                        TailCommand.err("tail: gateway error: \(text)")
                        if !outcome.withLockedValue({ $0.subscribed }) {
                            outcome.withLockedValue { $0.failure = text }
                            try await outbound.close(.normalClosure, reason: nil)
                        }
                    case .other:
                        if printEvents { TailCommand.out(text) }
                    }
                }
                tasks.cancelAll()
            }
        }
        do {
            try await client.run()
        } catch {
            outcome.withLockedValue { $0.failure = $0.failure ?? "\(error)" }
        }
        try? await group.shutdownGracefully()
        let end = TailClock.nowMicros()
        let result = outcome.withLockedValue { $0 }
        let summary = stats.withLockedValue { $0.summary(from: max(begin, warmupEnd), to: end) }
        let line = summary.json(service: service, instance: instance, failure: result.failure, subscribed: result.subscribed)
        if printEvents { Self.err(line) } else { Self.out(line) }
        if let failure = result.failure, !result.subscribed || summary.events == 0 {
            Self.err("tail: failed: \(failure)")
            throw ExitCode(1)
        }
        if !result.subscribed { throw ExitCode(1) }
    }

    static func out(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    static func err(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
