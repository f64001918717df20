import CoreMetrics
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Prometheus

/// Prometheus exposition of the gateway's counters through swift-metrics.
///
/// The per-frame path only bumps relaxed atomics in `GatewayCounters`; at scrape time the
/// deltas are pushed into swift-metrics counters and gauges backed by a Prometheus registry of
/// this gateway's own (so several gateways in one test process don't mix). Names follow
/// Prometheus conventions: `pilegate_` prefix, `_total` counters, units in names, bounded labels.
public final class GatewayMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let counters: GatewayCounters
    private let state = NIOLockedValueBox(SyncState())
    /// Extra collectors (the backend hub and outbox add theirs).
    private let collectors = NIOLockedValueBox<[@Sendable (MetricsWriter) -> Void]>([])

    struct SyncState {
        var last: [String: Int] = [:]
        var counterCache: [String: CoreMetrics.Counter] = [:]
        var gaugeCache: [String: CoreMetrics.Gauge] = [:]
    }

    init(counters: GatewayCounters) {
        self.counters = counters
        self.factory = PrometheusMetricsFactory(registry: registry)
    }

    /// Registers a collector called at every scrape to report counters and gauges.
    public func addCollector(_ collector: @escaping @Sendable (MetricsWriter) -> Void) {
        collectors.withLockedValue { $0.append(collector) }
    }

    /// The Prometheus text exposition, synced first.
    public func exposition(extraGauges: [(String, [(String, String)], Double)] = []) -> String {
        let writer = MetricsWriter()
        collectCore(into: writer)
        for c in collectors.withLockedValue({ $0 }) { c(writer) }
        for g in extraGauges { writer.gauge(g.0, g.1, g.2) }
        state.withLockedValue { s in
            for (name, labels, value) in writer.counters {
                let key = Self.key(name, labels)
                let counter = s.counterCache[key] ?? {
                    let c = CoreMetrics.Counter(label: name, dimensions: labels, factory: factory)
                    s.counterCache[key] = c
                    return c
                }()
                let delta = value - s.last[key, default: 0]
                if delta > 0 { counter.increment(by: delta) }
                s.last[key] = max(value, s.last[key, default: 0])
            }
            var reported: Set<String> = []
            for (name, labels, value) in writer.gauges {
                let key = Self.key(name, labels)
                reported.insert(key)
                let gauge = s.gaugeCache[key] ?? {
                    let g = CoreMetrics.Gauge(label: name, dimensions: labels, factory: factory)
                    s.gaugeCache[key] = g
                    return g
                }()
                gauge.record(value)
            }
            // A label set no longer reported (a lane without sessions, a service gone) reads 0,
            // not its last value.
            for (key, gauge) in s.gaugeCache where !reported.contains(key) { gauge.record(0) }
        }
        return registry.emitToString() + Self.render(histograms: writer.histograms)
    }

    /// Histograms whose buckets are counted elsewhere (relaxed atomics, locked structs) cannot be
    /// fed through swift-metrics observation by observation, so they are written here in the
    /// exposition format: `# TYPE name histogram`, cumulative `name_bucket{…,le="…"}`, `name_sum`
    /// and `name_count`.
    static func render(histograms: [MetricsWriter.Histogram]) -> String {
        var out = ""
        var byName: [String: [MetricsWriter.Histogram]] = [:]
        for h in histograms { byName[h.name, default: []].append(h) }
        for name in byName.keys.sorted() {
            out += "# TYPE \(name) histogram\n"
            for h in byName[name, default: []].sorted(by: { labelText($0.labels) < labelText($1.labels) }) {
                var cumulative = 0
                for (i, bound) in h.latency.bounds.enumerated() {
                    cumulative += h.latency.counts[i]
                    out += "\(name)_bucket\(labelText(h.labels + [("le", boundText(bound))])) \(cumulative)\n"
                }
                let count = h.latency.count
                out += "\(name)_bucket\(labelText(h.labels + [("le", "+Inf")])) \(count)\n"
                out += "\(name)_sum\(labelText(h.labels)) \(h.latency.sum)\n"
                out += "\(name)_count\(labelText(h.labels)) \(count)\n"
            }
        }
        return out
    }

    static func labelText(_ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return "" }
        let escaped = labels.map { k, v in
            let e = v.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
            return "\(k)=\"\(e)\""
        }
        return "{" + escaped.joined(separator: ",") + "}"
    }

    static func boundText(_ bound: Double) -> String {
        bound.rounded() == bound && abs(bound) < 1e15 ? String(Int(bound)) + ".0" : String(bound)
    }

    private static func key(_ name: String, _ labels: [(String, String)]) -> String {
        name + "{" + labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }

    private func collectCore(into w: MetricsWriter) {
        let c = counters
        for code in 0..<256 {
            let i = c.framesIn[code].load(ordering: .relaxed)
            if i > 0 { w.counter("pilegate_frames_received_total", [("type", GatewayCounters.typeLabel(UInt8(code)))], i) }
            let o = c.framesOut[code].load(ordering: .relaxed)
            if o > 0 { w.counter("pilegate_frames_sent_total", [("type", GatewayCounters.typeLabel(UInt8(code)))], o) }
        }
        w.counter("pilegate_received_bytes_total", [], c.bytesIn.load(ordering: .relaxed))
        w.counter("pilegate_sent_bytes_total", [], c.bytesOut.load(ordering: .relaxed))
        for (k, v) in c.malformed { w.counter("pilegate_malformed_input_total", [("kind", k)], v.load(ordering: .relaxed)) }
        for (k, v) in c.undecoded { w.counter("pilegate_undecoded_frames_total", [("reason", k)], v.load(ordering: .relaxed)) }
        w.counter("pilegate_crc_byte_swapped_total", [], c.swappedCRC.load(ordering: .relaxed))
        w.counter("pilegate_garbage_bytes_total", [], c.garbageBytes.load(ordering: .relaxed))
        w.counter("pilegate_connections_accepted_total", [], c.accepted.load(ordering: .relaxed))
        for (k, v) in c.refused { w.counter("pilegate_connections_refused_total", [("reason", k.rawValue)], v.load(ordering: .relaxed)) }
        for (k, v) in c.closed { w.counter("pilegate_connections_closed_total", [("reason", k.rawValue)], v.load(ordering: .relaxed)) }
        w.counter("pilegate_logins_total", [("result", "accepted")], c.loginsAccepted.load(ordering: .relaxed))
        w.counter("pilegate_logins_total", [("result", "rejected")], c.loginsRejected.load(ordering: .relaxed))
        w.counter("pilegate_logins_deferred_total", [], c.loginsDeferred.load(ordering: .relaxed))
        w.counter("pilegate_login_takeovers_total", [], c.takeovers.load(ordering: .relaxed))
        w.counter("pilegate_frames_refused_total", [("reason", "before_login")], c.refusedBeforeLogin.load(ordering: .relaxed))
        w.counter("pilegate_frames_refused_total", [("reason", "foreign_pile")], c.refusedForeignPile.load(ordering: .relaxed))
        w.counter("pilegate_frames_refused_total", [("reason", "encrypted_no_key")], c.refusedEncryptedNoKey.load(ordering: .relaxed))
        w.counter("pilegate_frames_refused_total", [("reason", "undecryptable")], c.refusedUndecryptable.load(ordering: .relaxed))
        w.counter("pilegate_pile_tls_handshakes_total", [], c.tlsHandshakes.load(ordering: .relaxed))
        for (k, v) in c.tlsHandshakeFailures {
            w.counter("pilegate_pile_tls_handshake_failures_total", [("reason", k.rawValue)], v.load(ordering: .relaxed))
        }
        w.counter("pilegate_logins_refused_total", [("reason", "certificate_mismatch")], c.refusedCertificateMismatch.load(ordering: .relaxed))
        w.counter("pilegate_logins_refused_total", [("reason", "registry_full")], c.refusedRegistryFull.load(ordering: .relaxed))
        w.counter("pilegate_encrypted_frames_total", [("direction", "in")], c.encryptedIn.load(ordering: .relaxed))
        w.counter("pilegate_encrypted_frames_total", [("direction", "out")], c.encryptedOut.load(ordering: .relaxed))
        w.counter("pilegate_rate_limit_episodes_total", [], c.throttleEpisodes.load(ordering: .relaxed))
        w.counter("pilegate_slow_reader_episodes_total", [], c.slowReaderEpisodes.load(ordering: .relaxed))
        w.counter("pilegate_commands_refused_total", [("limit", "pile")], c.commandsRefused.load(ordering: .relaxed))
        w.counter("pilegate_flap_bans_total", [], c.flapBans.load(ordering: .relaxed))
        w.counter("pilegate_heartbeats_total", [], c.heartbeats.load(ordering: .relaxed))
        w.gauge("pilegate_connections", [], Double(c.connections.load(ordering: .relaxed)))
        w.gauge("pilegate_pending_logins", [], Double(c.pendingLogins.load(ordering: .relaxed)))
        w.gauge("pilegate_sessions_online", [], Double(c.online.load(ordering: .relaxed)))
        w.gauge("pilegate_sessions_online_peak", [], Double(c.peakOnline.load(ordering: .relaxed)))
        w.gauge("pilegate_uptime_seconds", [], Double((NIODeadline.now() - c.startedAt).nanoseconds) / 1e9)
        let p = ProcessStats.current()
        w.gauge("pilegate_process_resident_memory_bytes", [], Double(p.residentBytes))
        w.gauge("pilegate_process_cpu_seconds", [], p.cpuSeconds)
        w.gauge("pilegate_process_open_fds", [], Double(p.openFiles))
    }
}


/// Collects metric values during one scrape.
public final class MetricsWriter: @unchecked Sendable {
    var counters: [(String, [(String, String)], Int)] = []
    var gauges: [(String, [(String, String)], Double)] = []
    public func counter(_ name: String, _ labels: [(String, String)], _ value: Int) { counters.append((name, labels, value)) }
    public func gauge(_ name: String, _ labels: [(String, String)], _ value: Double) { gauges.append((name, labels, value)) }

    struct Histogram {
        var name: String
        var labels: [(String, String)]
        var latency: LatencyBuckets
    }
    var histograms: [Histogram] = []

    /// A histogram counted by its owner: `buckets[i]` observations fell in `(bounds[i-1], bounds[i]]`
    /// (not cumulative), `buckets[bounds.count]` (if present) above the last bound; `sum` of all
    /// observed values. Written as a Prometheus histogram named `name` (`_bucket`, `_sum`, `_count`).
    public func histogram(_ name: String, _ labels: [(String, String)], bounds: [Double], buckets: [Int], sum: Double) {
        // Counts beyond one per bound plus the overflow cannot be written; such a histogram is left out.
        guard let latency = LatencyBuckets(bounds: bounds, counts: buckets, sum: sum) else { return }
        histogram(name, labels, latency)
    }

    /// A `LatencyBuckets` counted by its owner, written as the Prometheus histogram `name`.
    public func histogram(_ name: String, _ labels: [(String, String)], _ latency: LatencyBuckets) {
        histograms.append(Histogram(name: name, labels: labels, latency: latency))
    }
}

/// Resident memory, CPU time and open files of this process, from /proc (Linux).
public struct ProcessStats: Codable, Sendable {
    public var residentBytes: Int
    public var cpuSeconds: Double
    public var openFiles: Int

    private static let cache = NIOLockedValueBox<(at: NIODeadline, stats: ProcessStats)?>(nil)

    /// The current figures, cached for a second: listing /proc/self/fd with ~20,000 entries costs
    /// tens of milliseconds, too much for every scrape and stats poll.
    public static func current() -> ProcessStats {
        let now = NIODeadline.now()
        if let c = cache.withLockedValue({ $0 }), now - c.at < .seconds(1) { return c.stats }
        let fresh = read()
        cache.withLockedValue { $0 = (now, fresh) }
        return fresh
    }

    private static func read() -> ProcessStats {
        var rss = 0
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let parts = statm.split(separator: " ")
            if parts.count > 1, let pages = Int(parts[1]) { rss = pages * Int(sysconf(Int32(_SC_PAGESIZE))) }
        }
        var cpu = 0.0
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // After the command: state(0) … utime(11) stime(12), in clock ticks.
            if fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]) {
                cpu = (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
            }
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        return ProcessStats(residentBytes: rss, cpuSeconds: cpu, openFiles: fds)
    }
}
