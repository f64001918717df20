import Foundation
import PileGate
import PileSim
import Testing
import YKC

/// `pilegate stats` and the admin verbs, run as the built executable against a gateway assembled
/// as `pilegate serve` assembles it, with simulated piles and real WebSocket backends.
@Suite("Ops: pilegate stats and admin verbs")
struct OpsCLITests {
    @Test("stats: the screen shows connections, frames, lanes per service with fallbacks, instances, latency, outbox, process; --json is the raw snapshot")
    func statsScreenAndJSON() async throws {
        try await OpsScene.run { scene in
            let api = scene.gw.api
            let screen = try await CLI.run(["stats", "--api", api, "--interval", "0.3"])
            #expect(screen.status == 0, "\(screen.stderr)")
            let out = screen.stdout
            #expect(out.contains("pilegate ops-node"))
            #expect(out.contains("online 3 "), "\(out)")
            #expect(out.contains("rates over"))
            for heading in ["CONNECTIONS", "FRAMES", "DECODE ERRORS", "RATE LIMITS", "LANES", "OUTBOX", "PROCESS"] {
                #expect(out.contains(heading), "missing \(heading)")
            }
            // Heartbeats flow both ways, with a non-zero rate.
            let hb = try #require(screen.lines.first { $0.contains("0x03_heartbeat") })
            let hbFields = hb.split(separator: " ")
            #expect(hbFields.count == 5 && (Double(hbFields[1]) ?? 0) > 0, "\(hb)")
            #expect(out.contains("0x04_heartbeat_reply"))
            #expect(out.contains("rules v1: 1 rule → gray"))
            #expect(out.contains("sessions  base 1   gray 2"), "\(out)")
            // Per lane and service: gray billing routed to its own instance, gray monitor fell back.
            let grayMonitor = try #require(screen.lines.first { $0.hasPrefix("  gray") && $0.contains("monitor") })
            let gm = grayMonitor.split(separator: " ").map(String.init)
            #expect(Int(gm[3]) ?? 0 > 0 && Int(gm[5]) == Int(gm[3]), "every gray monitor event is a fallback: \(grayMonitor)")
            let grayBilling = try #require(screen.lines.first { $0.hasPrefix("  gray") && $0.contains("billing") })
            let gb = grayBilling.split(separator: " ").map(String.init)
            #expect(Int(gb[3]) ?? 0 > 0 && gb[5] == "0", "\(grayBilling)")
            #expect(!grayBilling.hasSuffix("-") && (grayBilling.hasSuffix("ms") || grayBilling.hasSuffix("µs") || grayBilling.hasSuffix(" s")), "latency p50/p99 shown: \(grayBilling)")
            #expect(out.contains("instances 3: healthy 3   warming 0   ejected 0   draining 0"), "\(out)")
            #expect(out.contains("depth "))
            #expect(out.contains("memory ") && out.contains("MiB") && out.contains("% of a core"))

            let json = try await CLI.run(["stats", "--json", "--api", api])
            #expect(json.status == 0)
            let doc = try #require(json.json)
            #expect(doc["node"]?.stringValue == "ops-node")
            #expect(doc["counters"]?["online"]?.intValue == 3)
            #expect(doc["sessionsByLane"]?["gray"]?.intValue == 2)
            #expect(doc["extensions"]?["hub"]?["lanes"]?["gray"]?["monitor"]?["fallbacks"]?.intValue ?? 0 > 0)

            let watch = try await CLI.run(["stats", "--watch", "--count", "2", "--interval", "0.2", "--api", api])
            #expect(watch.status == 0)
            #expect(watch.stdout.components(separatedBy: "\u{1B}[H\u{1B}[2J").count == 3, "two redraws")
            let watchJSON = try await CLI.run(["stats", "--watch", "--json", "--count", "2", "--interval", "0.2", "--api", api])
            #expect(watchJSON.lines.filter { !$0.isEmpty }.count == 2)
        }
    }

    @Test("an unreachable gateway: one line on stderr, non-zero exit, for stats and every verb")
    func unreachable() async throws {
        // A port that was just free: bind nothing there.
        let api = "http://127.0.0.1:9"
        for args in [["stats"], ["stats", "--json"], ["piles", "list"], ["piles", "show", "1"], ["lanes", "show"], ["outbox"], ["send", "1", "reboot"]] {
            let r = try await CLI.run(args + ["--api", api])
            #expect(r.status != 0, "\(args)")
            #expect(r.stdout.isEmpty)
            #expect(r.stderr == "pilegate: cannot reach the gateway at \(api): connection refused\n", "\(args): \(r.stderr)")
        }
        let bad = try await CLI.run(["stats", "--api", "ftp://x"])
        #expect(bad.status != 0 && bad.stderr.contains("--api must be an http(s) URL"))
    }

    @Test("piles list, show and kick: tables for people, JSON for scripts, 4xx as a message and exit 1")
    func pilesVerbs() async throws {
        try await OpsScene.run { scene in
            let api = scene.gw.api
            let list = try await CLI.run(["piles", "list", "--online", "--api", api])
            #expect(list.status == 0)
            #expect(list.lines.first?.hasPrefix("pile ") == true)
            let rows = list.lines.dropFirst().filter { !$0.isEmpty }
            #expect(rows.count == 3)
            #expect(rows.first?.hasPrefix("32010600000001  online  gray") == true, "\(list.stdout)")
            #expect(rows.last?.hasPrefix("55010600000003  online  base") == true)

            let page = try await CLI.run(["piles", "list", "--limit", "2", "--json", "--api", api])
            let doc = try #require(page.json)
            #expect(doc["piles"]?.arrayValue?.count == 2)
            #expect(doc["next"]?.stringValue == "32010600000002")
            let paged = try await CLI.run(["piles", "list", "--limit", "2", "--api", api])
            #expect(paged.stdout.contains("--after 32010600000002"))

            let show = try await CLI.run(["piles", "show", "32010600000002", "--api", api])
            #expect(show.status == 0)
            #expect(show.lines.contains("state           online"), "\(show.stdout)")
            #expect(show.lines.contains("lane            gray"))
            #expect(show.stdout.contains("guns\n"))
            let showJSON = try await CLI.run(["piles", "show", "32010600000002", "--json", "--api", api])
            #expect(showJSON.json?["session"]?["lane"]?.stringValue == "gray")

            let unknown = try await CLI.run(["piles", "show", "99999999999999", "--api", api])
            #expect(unknown.status == 1)
            #expect(unknown.stderr.hasPrefix("pilegate: GET /v1/piles/99999999999999: 404 not_found: "))
            let invalid = try await CLI.run(["piles", "show", "12x", "--api", api])
            #expect(invalid.status != 0 && invalid.stderr.contains("invalid pile id"))

            let kick = try await CLI.run(["piles", "kick", OpsScene.basePile, "--api", api])
            #expect(kick.status == 0, "\(kick.stderr)")
            #expect(kick.stdout.hasPrefix("kicked pile \(OpsScene.basePile) (connection "))
            try await scene.gw.eventually("kicked pile offline") { scene.gw.gateway.directory.session(for: PileID(OpsScene.basePile) ?? PileID(raw: 0)) == nil }
            let again = try await CLI.run(["piles", "kick", OpsScene.basePile, "--json", "--api", api])
            #expect(again.status == 1)
            #expect(again.stderr.contains("404 pile_offline"))
            let offline = try await CLI.run(["piles", "list", "--offline", "--json", "--api", api])
            #expect(offline.json?["piles"]?.arrayValue?.first?["pile"]?["offlineReason"]?.stringValue == "kicked")
        }
    }

    @Test("bans list and lift: a flapping pile's ban as a table and JSON, lifted by key, bad keys refused")
    func bansVerbs() async throws {
        try await OpsGateway.with({
            $0.flapMaxConnects = 1
            $0.flapWindow = 30
            $0.flapBanDuration = 600
        }) { gw in
            let api = gw.api
            let empty = try await CLI.run(["bans", "list", "--api", api])
            #expect(empty.status == 0 && empty.stdout == "no bans\n", "\(empty.stdout)\(empty.stderr)")
            for expected in [LoginResult.accepted, .rejected] {
                let p = try await gw.pile("32010600000009")
                #expect(try await p.waitForLoginResult() == expected)
                await p.stop()
            }
            let list = try await CLI.run(["bans", "list", "--api", api])
            #expect(list.status == 0)
            #expect(list.lines.first?.hasPrefix("key ") == true, "\(list.stdout)")
            #expect(list.lines.contains { $0.hasPrefix("pile:32010600000009  pile ") && $0.hasSuffix("2 connects in 30s (limit 1)") }, "\(list.stdout)")
            let json = try await CLI.run(["bans", "list", "--json", "--api", api])
            #expect(json.json?["bans"]?.arrayValue?.first?["key"]?.stringValue == "pile:32010600000009")

            let lift = try await CLI.run(["bans", "lift", "pile:32010600000009", "--api", api])
            #expect(lift.status == 0, "\(lift.stderr)")
            #expect(lift.stdout == "lifted pile:32010600000009\n")
            let again = try await CLI.run(["bans", "lift", "pile:32010600000009", "--api", api])
            #expect(again.status == 1)
            #expect(again.stderr.hasPrefix("pilegate: DELETE /v1/bans/pile:32010600000009: 404 no_ban: "), "\(again.stderr)")
            let bad = try await CLI.run(["bans", "lift", "32010600000009", "--api", api])
            #expect(bad.status != 0 && bad.stderr.contains("expected pile:<pile id> or addr:<IP address>"))
            let badAddress = try await CLI.run(["bans", "lift", "addr:1.2.3", "--api", api])
            #expect(badAddress.status == 1 && badAddress.stderr.contains("400 invalid_ban_key"), "\(badAddress.stderr)")

            let p = try await gw.pile("32010600000009")
            #expect(try await p.waitForLoginResult() == .accepted)
            await p.stop()
        }
    }

    @Test("lanes show and set: rules table, JSON round trip, refused rules named, nothing changed")
    func lanesVerbs() async throws {
        try await OpsGateway.with { gw in try await Self.lanes(api: gw.api) }
    }

    static func lanes(api: String) async throws {
        let empty = try await CLI.run(["lanes", "show", "--api", api])
        #expect(empty.stdout == "version 0, 0 rules\nno rules: every session is in the base lane\n")
        let dir = NSTemporaryDirectory() + "pilegate-lanes-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/rules.json"
        try #"{"rules":[{"lane":"gray","match":{"percent":5}},{"lane":"canary","match":{"piles":["32010600000001"]}}]}"#
            .write(toFile: file, atomically: true, encoding: .utf8)
        let set = try await CLI.run(["lanes", "set", file, "--api", api])
        #expect(set.status == 0, "\(set.stderr)")
        #expect(set.lines.first == "lane rules replaced")
        let show = try await CLI.run(["lanes", "show", "--api", api])
        #expect(show.lines.first?.hasPrefix("version 1, updated ") == true)
        #expect(show.lines.contains("1  gray    percent=5"), "\(show.stdout)")
        #expect(show.lines.contains(#"2  canary  piles=["32010600000001"]"#))
        // --json output is a valid `lanes set` file (with version: applies only on top of it).
        let json = try await CLI.run(["lanes", "show", "--json", "--api", api])
        #expect(json.json?["version"]?.intValue == 1)
        try json.stdout.write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try await CLI.run(["lanes", "set", file, "--api", api]).status == 0)
        let stale = try await CLI.run(["lanes", "set", file, "--api", api])
        #expect(stale.status == 1 && stale.stderr.contains("409 version_conflict"), "\(stale.stderr)")

        try #"{"rules":[{"lane":"gray","match":{"percent":500}}]}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let refused = try await CLI.run(["lanes", "set", file, "--api", api])
        #expect(refused.status == 1)
        #expect(refused.stderr.hasPrefix("pilegate: PUT /v1/lanes: 400 invalid_rules: rules[0].match.percent"), "\(refused.stderr)")
        try "{not json".write(toFile: file, atomically: true, encoding: .utf8)
        let notJSON = try await CLI.run(["lanes", "set", file, "--api", api])
        #expect(notJSON.status == 1 && notJSON.stderr.contains("is not valid JSON"))
        let missing = try await CLI.run(["lanes", "set", dir + "/nope.json", "--api", api])
        #expect(missing.status == 1 && missing.stderr.contains("cannot read"))
        #expect(try await CLI.run(["lanes", "show", "--json", "--api", api]).json?["version"]?.intValue == 2)
    }

    @Test("send: the pile's decoded reply; --arg values parsed as JSON; offline, unknown and bad args exit 1")
    func sendVerb() async throws {
        try await OpsScene.run { scene in
            let api = scene.gw.api
            let pile = OpsScene.grayPiles[0]
            let stop = try await CLI.run(["send", pile, "remote_stop", "--arg", "gun=1", "--timeout", "3", "--api", api])
            #expect(stop.status == 0, "\(stop.stderr)")
            #expect(stop.lines.first == "reply remote_stop_reply (0x35)")
            #expect(stop.lines.contains { $0.hasPrefix("  pileId") && $0.hasSuffix(pile) })
            #expect(stop.lines.contains { $0.hasPrefix("  gun") && $0.hasSuffix("1") })
            let json = try await CLI.run(["send", pile, "remote_stop", "--args-json", #"{"gun":2}"#, "--json", "--api", api])
            #expect(json.json?["ok"]?.boolValue == true)
            #expect(json.json?["reply"]?["event"]?.stringValue == "remote_stop_reply")
            #expect(json.json?["reply"]?["data"]?["gun"]?.intValue == 2)

            let offline = try await CLI.run(["send", "32010600000099", "remote_stop", "--arg", "gun=1", "--api", api])
            #expect(offline.status == 1)
            #expect(offline.stderr.contains("404 pile_offline"), "\(offline.stderr)")
            let unknown = try await CLI.run(["send", pile, "fly_to_the_moon", "--api", api])
            #expect(unknown.status == 1 && unknown.stderr.contains("400 unknown_command"))
            let badArg = try await CLI.run(["send", pile, "remote_stop", "--arg", "novalue", "--api", api])
            #expect(badArg.status != 0 && badArg.stderr.contains("--arg must be key=value"))
        }
    }

    @Test("outbox: depth per service and type from GET /v1/outbox; JSON as the API gives it")
    func outboxVerb() async throws {
        try await OpsScene.run { scene in
            let api = scene.gw.api
            let r = try await CLI.run(["outbox", "--api", api])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.lines.first?.hasPrefix("depth ") == true, "\(r.stdout)")
            let json = try await CLI.run(["outbox", "--json", "--api", api])
            #expect(json.json?["counters"] != nil)
        }
    }
}
