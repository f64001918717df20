import Foundation
import PileGate
import Testing
import YKC

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `/metrics` as a Prometheus server reads it, and the web view at `/` as a person sees it.
@Suite("Ops: metrics exposition and web view")
struct OpsMetricsWebViewTests {
    static func get(_ url: String) async throws -> (status: Int, contentType: String, body: String) {
        let (data, response) = try await URLSession.shared.data(from: try #require(URL(string: url)))
        let http = response as? HTTPURLResponse
        return (http?.statusCode ?? 0, http?.value(forHTTPHeaderField: "Content-Type") ?? "", String(decoding: data, as: UTF8.self))
    }

    /// Metrics `pilegate stats` shows, by family name and type (docs/CLI.md lists them).
    static let documented: [String: String] = [
        "pilegate_connections": "gauge", "pilegate_pending_logins": "gauge", "pilegate_sessions_online": "gauge",
        "pilegate_sessions_online_peak": "gauge", "pilegate_connections_accepted_total": "counter",
        "pilegate_connections_refused_total": "counter", "pilegate_connections_closed_total": "counter",
        "pilegate_logins_total": "counter", "pilegate_logins_deferred_total": "counter", "pilegate_login_takeovers_total": "counter",
        "pilegate_frames_received_total": "counter", "pilegate_frames_sent_total": "counter",
        "pilegate_received_bytes_total": "counter", "pilegate_sent_bytes_total": "counter", "pilegate_heartbeats_total": "counter",
        "pilegate_malformed_input_total": "counter", "pilegate_undecoded_frames_total": "counter",
        "pilegate_rate_limit_episodes_total": "counter", "pilegate_slow_reader_episodes_total": "counter",
        "pilegate_flap_bans_total": "counter", "pilegate_frames_refused_total": "counter",
        "pilegate_lane_sessions": "gauge", "pilegate_lane_rules_version": "gauge", "pilegate_registered_piles": "gauge",
        "pilegate_banned_addresses": "gauge", "pilegate_banned_piles": "gauge",
        "pilegate_hub_events_routed_total": "counter", "pilegate_hub_fallbacks_total": "counter",
        "pilegate_hub_acks_total": "counter", "pilegate_hub_delivery_failures_total": "counter",
        "pilegate_hub_ejections_total": "counter", "pilegate_hub_queue_overflows_total": "counter",
        "pilegate_hub_delivery_latency_seconds": "histogram", "pilegate_hub_in_flight": "gauge", "pilegate_hub_instances": "gauge",
        "pilegate_hub_undeliverable_events_total": "counter",
        "pilegate_process_resident_memory_bytes": "gauge", "pilegate_process_cpu_seconds": "gauge",
        "pilegate_process_open_fds": "gauge", "pilegate_uptime_seconds": "gauge",
    ]

    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    /// Parses the text exposition format strictly; records an issue for each bad line.
    static func parse(_ text: String) -> (types: [String: String], samples: [Sample]) {
        var types: [String: String] = [:]
        var samples: [Sample] = []
        let nameRE = /[a-zA-Z_:][a-zA-Z0-9_:]*/
        let sampleRE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})? (\S+)$/
        let labelRE = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ")
                if parts.count >= 2 && parts[1] == "TYPE" {
                    guard parts.count == 4, (try? nameRE.wholeMatch(in: parts[2])) != nil,
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(String(parts[3]))
                    else {
                        Issue.record("bad TYPE line: \(line)")
                        continue
                    }
                    #expect(types[String(parts[2])] == nil, "TYPE given twice for \(parts[2])")
                    types[String(parts[2])] = String(parts[3])
                } else if parts.count >= 2 && parts[1] == "HELP" {
                    #expect(parts.count >= 3, "bad HELP line: \(line)")
                }
                continue
            }
            guard let m = try? sampleRE.wholeMatch(in: line) else {
                Issue.record("not `name{labels} value`: \(line)")
                continue
            }
            let valueText = String(m.3)
            guard let value = Double(valueText) ?? ["+Inf": Double.infinity, "-Inf": -Double.infinity, "NaN": Double.nan][valueText]
            else {
                Issue.record("bad value: \(line)")
                continue
            }
            var labels: [String: String] = [:]
            if let l = m.2 { for lm in l.matches(of: labelRE) { labels[String(lm.1)] = String(lm.2) } }
            samples.append(Sample(name: String(m.1), labels: labels, value: value))
        }
        return (types, samples)
    }

    static func family(of name: String, types: [String: String]) -> String? {
        if types[name] != nil { return name }
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if types[base] == "histogram" || types[base] == "summary" { return base }
        }
        return nil
    }

    @Test("/metrics: valid exposition, pilegate_ names with units, counters end in _total, bounded labels, the documented metrics, a real histogram")
    func metricsExposition() async throws {
        try await OpsScene.run { scene in
            let (status, contentType, body) = try await Self.get(scene.gw.api + "/metrics")
            #expect(status == 200)
            #expect(contentType.hasPrefix("text/plain"))
            let (types, samples) = Self.parse(body)
            #expect(!samples.isEmpty)
            for s in samples {
                let fam = Self.family(of: s.name, types: types)
                #expect(fam != nil, "sample without a TYPE: \(s.name)")
                #expect(s.name.hasPrefix("pilegate_"), "\(s.name)")
                if let fam, types[fam] == "counter" { #expect(fam.hasSuffix("_total"), "counter \(fam) must end in _total") }
                for (k, v) in s.labels {
                    #expect(!["pile", "pile_id", "pileId", "id", "instance", "connection"].contains(k), "\(s.name) has label \(k)")
                    #expect(!(OpsScene.grayPiles + [OpsScene.basePile]).contains { v.contains($0) }, "pile id as a label: \(s.name)")
                }
            }
            for (name, type) in Self.documented {
                #expect(types[name] == type, "\(name): expected \(type), got \(types[name] ?? "nothing")")
            }
            // The figures match the running scene.
            func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
                samples.first { $0.name == name && $0.labels == labels }?.value
            }
            #expect(value("pilegate_sessions_online") == 3)
            #expect(value("pilegate_lane_sessions", ["lane": "gray"]) == 2)
            #expect(value("pilegate_lane_sessions", ["lane": "base"]) == 1)
            #expect(value("pilegate_lane_rules_version") == 1)
            #expect(value("pilegate_hub_instances", ["state": "healthy"]) == 3)
            #expect((value("pilegate_hub_fallbacks_total", ["lane": "gray", "service": "monitor"]) ?? 0) > 0)
            #expect(value("pilegate_hub_fallbacks_total", ["lane": "gray", "service": "billing"]) == 0)
            #expect((value("pilegate_frames_received_total", ["type": "0x03_heartbeat"]) ?? 0) > 0)
            // Histogram: cumulative buckets ending in +Inf = _count, with _sum.
            let labels = ["lane": "gray", "service": "billing"]
            let buckets = samples.filter { $0.name == "pilegate_hub_delivery_latency_seconds_bucket" && $0.labels["lane"] == "gray" && $0.labels["service"] == "billing" }
            #expect(buckets.count == BackendLaneTraffic.bounds.count + 1)
            #expect(zip(buckets, buckets.dropFirst()).allSatisfy { $0.value <= $1.value }, "buckets are cumulative")
            #expect(buckets.last?.labels["le"] == "+Inf")
            let count = try #require(value("pilegate_hub_delivery_latency_seconds_count", labels))
            #expect(count > 0 && buckets.last?.value == count)
            #expect((value("pilegate_hub_delivery_latency_seconds_sum", labels) ?? -1) >= 0)
        }
    }

    @Test("GET / serves one self-contained HTML page")
    func pageIsSelfContained() async throws {
        try await OpsGateway.with { gw in
            let (status, contentType, body) = try await Self.get(gw.api + "/")
            #expect(status == 200)
            #expect(contentType == "text/html; charset=utf-8")
            #expect(body.hasPrefix("<!doctype html>"))
            #expect(body.contains("fetch(\"/v1/stats\""))
            for external in ["src=\"http", "href=\"http", "src='http", "@import", "url(http", "<link "] {
                #expect(!body.contains(external), "external asset: \(external)")
            }
        }
    }

    static var chromium: String? {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test(
        "headless Chromium renders the live figures: online count, connections chart, lane split per service with fallbacks",
        .enabled(if: chromium != nil, "needs Debian's chromium (scripts/setup.sh installs it)"))
    func browserRendersLiveFigures() async throws {
        try await OpsScene.run { scene in
            let out = ProcessInfo.processInfo.environment["PILEGATE_WEBVIEW_OUT"]
                ?? NSTemporaryDirectory() + "pilegate-webview-" + UUID().uuidString
            let script = CLI.repositoryRoot.appendingPathComponent("scripts/webview-check.sh")
            let r = try await CLI.spawn(
                URL(fileURLWithPath: "/bin/bash"), [script.path, scene.gw.api + "/?interval=0.5", out, "3000"])
            #expect(r.status == 0, "webview-check: \(r.stderr)")
            let dom = try String(contentsOfFile: out + "/dom.html", encoding: .utf8)
            #expect(dom.contains(#"<span id="status" class="live">live</span>"#), "page did not get a snapshot")
            #expect(dom.contains(#"<div class="v" id="online">3</div>"#))
            #expect(dom.contains(#"<span id="node" class="dim">ops-node</span>"#))
            #expect(dom.contains(#"<path d="M"#), "connections chart drawn")
            #expect(dom.contains(#"<tr data-lane="gray"><td>"#), "sessions per lane")
            // The lane split: gray monitor events are all fallbacks, gray billing has none.
            let grayMonitor = try #require(dom.range(of: #"<tr data-lane="gray" data-service="monitor">"#))
            let row = dom[grayMonitor.upperBound...].prefix { $0 != "\n" }.components(separatedBy: "</tr>").first ?? ""
            #expect(row.contains(#"<td class="fallbacks fb">"#), "gray monitor fallbacks shown: \(row)")
            #expect(dom.contains(#"<tr data-lane="gray" data-service="billing">"#))
            #expect(dom.contains(#"data-lane="base" data-service="billing""#))
            let png = try Data(contentsOf: URL(fileURLWithPath: out + "/page.png"))
            #expect(png.count > 10_000 && png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "a real screenshot")
            if ProcessInfo.processInfo.environment["PILEGATE_WEBVIEW_OUT"] == nil { try? FileManager.default.removeItem(atPath: out) }
        }
    }
}
