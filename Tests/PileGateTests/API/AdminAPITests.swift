import Foundation
import PileGate
import PileSim
import Testing
import YKC

@Suite("Admin API")
struct AdminAPITests {
    @Test("health, readiness, stats and 4xx answers for bad requests")
    func basics() async throws {
        try await withGateway { gw in
            #expect(try await gw.http("GET", "/healthz").status == 200)
            #expect(try await gw.http("GET", "/readyz").status == 200)
            let unknown = try await gw.http("GET", "/v1/piles/12345678901234")
            #expect(unknown.status == 404)
            #expect(unknown.object["error"] as? String == "not_found")
            let bad = try await gw.http("GET", "/v1/piles/abc")
            #expect(bad.status == 400)
            #expect((bad.body).contains("abc"))
            #expect(bad.object["error"] as? String == "invalid_pile_id")
            #expect(try await gw.http("GET", "/v1/piles?limit=0").status == 400)
            #expect(try await gw.http("GET", "/v1/piles?online=maybe").status == 400)
            #expect(try await gw.http("GET", "/v1/piles?after=xyz").status == 400)
            let stats = try await gw.http("GET", "/v1/stats")
            #expect(stats.status == 200)
            #expect(stats.object["node"] as? String == "test-node")
            #expect((stats.object["counters"] as? [String: Any])?["online"] as? Int == 0)
        }
    }

    @Test("piles page by id with online filtering")
    func paging() async throws {
        try await withGateway { gw in
            var piles: [SimulatedPile] = []
            for i in 0..<5 {
                let p = try await gw.pile(String(32_010_600_019_500 + i))
                try await p.waitForLogin()
                piles.append(p)
            }
            let first = try await gw.http("GET", "/v1/piles?online=true&limit=2")
            let page1 = (first.object["piles"] as? [[String: Any]] ?? []).compactMap { ($0["pile"] as? [String: Any])?["id"] as? String }
            #expect(page1 == ["32010600019500", "32010600019501"])
            let next = first.object["next"] as? String
            #expect(next == "32010600019501")
            let second = try await gw.http("GET", "/v1/piles?online=true&limit=10&after=\(next ?? "")")
            let page2 = (second.object["piles"] as? [[String: Any]] ?? []).compactMap { ($0["pile"] as? [String: Any])?["id"] as? String }
            #expect(page2 == ["32010600019502", "32010600019503", "32010600019504"])
            #expect(second.object.keys.contains("next") == false, "the last page has no next (API.md)")
            await piles[0].stop()
            _ = try await gw.eventually { try await gw.gateway.registry.records(online: false, after: nil, limit: 10).count == 1 }
            let offline = try await gw.http("GET", "/v1/piles?online=false")
            let ids = (offline.object["piles"] as? [[String: Any]] ?? []).compactMap { ($0["pile"] as? [String: Any])?["id"] as? String }
            #expect(ids == ["32010600019500"])
            for p in piles.dropFirst() { await p.stop() }
        }
    }

    @Test("/metrics is Prometheus text with the documented pilegate_ metrics")
    func metrics() async throws {
        try await withGateway { gw in
            let p = try await gw.pile("32010600019600")
            try await p.waitUntil(timeout: .seconds(3), "hb") { $0.heartbeatsAcked >= 2 }
            let m = try await gw.http("GET", "/metrics")
            #expect(m.status == 200)
            for name in [
                "pilegate_frames_received_total", "pilegate_frames_sent_total", "pilegate_connections_accepted_total",
                "pilegate_connections_closed_total", "pilegate_logins_total", "pilegate_sessions_online",
                "pilegate_connections", "pilegate_pending_logins", "pilegate_malformed_input_total",
                "pilegate_rate_limit_episodes_total", "pilegate_process_resident_memory_bytes", "pilegate_heartbeats_total",
            ] {
                #expect(m.body.contains("# TYPE \(name) "), "missing \(name)")
            }
            #expect(m.body.contains(#"pilegate_frames_received_total{type="0x03_heartbeat"}"#))
            #expect(m.body.contains("pilegate_sessions_online 1"))
            // Every sample line is `name{labels} value` or `name value`.
            for line in m.body.split(separator: "\n") where !line.hasPrefix("#") {
                let parts = line.split(separator: " ")
                #expect(parts.count == 2 && Double(parts[1]) != nil, "bad line: \(line)")
                #expect(!line.contains("32010600019600"), "pile id must never be a label")
            }
            await p.stop()
        }
    }
}
