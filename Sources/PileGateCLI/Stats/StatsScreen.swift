import Foundation
import PileGate
import YKC

/// Renders the `pilegate stats` screen from two snapshots of `/v1/stats` (rates are the counter
/// deltas over the time between them) and, when available, the lane rule document.
///
/// Tolerant by design: a section whose fields are missing (an older gateway, no hub, no outbox)
/// is shown as absent rather than failing the whole screen.
struct StatsScreen {
    var current: StatsSample
    var previous: StatsSample?
    var laneRules: JSONValue?
    /// Width of the terminal, for the separator lines.
    var width = 100

    /// Seconds between the two snapshots (the gateway's own uptime clock when both have it).
    var interval: Double? {
        guard let previous else { return nil }
        if let a = previous.uptime, let b = current.uptime, b > a { return b - a }
        let d = current.fetchedAt.timeIntervalSince(previous.fetchedAt)
        return d > 0 ? d : nil
    }

    private func num(_ v: JSONValue?) -> Double { v?.doubleValue ?? 0 }
    private func int(_ v: JSONValue?) -> Int { Int(num(v)) }

    /// Rate of a counter at `path` under `counters` (nil before the second snapshot).
    private func rate(_ now: Double, _ before: Double?) -> Double? {
        guard let interval, let before else { return nil }
        return max(0, now - before) / interval
    }

    private func rateText(_ now: Double, _ before: Double?) -> String {
        rate(now, before).map(Format.rate) ?? "-"
    }

    private func counter(_ key: String) -> (Double, Double?) {
        (num(current.counters[key]), previous.map { num($0.counters[key]) })
    }

    private func section(_ title: String, _ note: String = "") -> String {
        let head = note.isEmpty ? title : title + "  " + note
        return head + "\n"
    }

    var rendered: String {
        var out = ""
        let c = current.counters
        let node = current.json["node"]?.stringValue ?? "?"
        var head = "pilegate \(node)"
        if let up = current.uptime { head += " · up \(Format.duration(up))" }
        head += " · " + ISO8601DateFormatter().string(from: current.fetchedAt)
        if let interval { head += " · rates over \(Format.duration(interval))" } else { head += " · rates need two snapshots" }
        out += head + "\n\n"

        // Connections
        out += section("CONNECTIONS")
        out += "  online \(int(c["online"]))   logging in \(int(c["pendingLogins"]))   open \(int(c["connections"]))"
        out += "   peak \(int(c["peakOnline"]))   registered \(int(current.json["registeredPiles"]))\n"
        let accepted = counter("accepted")
        let logins = counter("loginsAccepted")
        let rejected = counter("loginsRejected")
        let deferred = counter("loginsDeferred")
        out += "  accepts/s \(rateText(accepted.0, accepted.1))   logins/s \(rateText(logins.0, logins.1))"
        out += "   rejected/s \(rateText(rejected.0, rejected.1))   deferred/s \(rateText(deferred.0, deferred.1))"
        out += "   takeovers \(int(c["takeovers"]))\n"
        out += "  closes/s   " + byReason("closed") + "\n"
        out += "  refused/s  " + byReason("refused") + "\n\n"

        // Frames
        out += framesSection()

        // Decode errors
        out += section("DECODE ERRORS")
        var errors = TextTable(["kind", "/s", "total"], rightAligned: [1, 2], indent: "  ")
        for (group, key) in [("malformed", "malformed"), ("undecoded", "undecoded")] {
            let now = c[key]?.objectValue ?? [:]
            let before = previous?.counters[key]?.objectValue ?? [:]
            for k in now.keys.sorted() where num(now[k]) > 0 {
                errors.add(["\(group) \(k)", rateText(num(now[k]), before[k].map { num($0) }), String(int(now[k]))])
            }
        }
        for (label, key) in [("CRC bytes swapped", "swappedCRC"), ("garbage bytes", "garbageBytes")] where num(c[key]) > 0 {
            let v = counter(key)
            errors.add([label, rateText(v.0, v.1), String(Int(v.0))])
        }
        out += errors.rows.isEmpty ? "  none\n\n" : errors.rendered + "\n"

        // Rate limits
        out += section("RATE LIMITS")
        var limits: [String] = []
        for (label, key) in [
            ("throttled", "throttleEpisodes"), ("slow readers", "slowReaderEpisodes"), ("flap bans", "flapBans"),
            ("refused before login", "refusedBeforeLogin"), ("foreign pile", "refusedForeignPile"),
        ] {
            let v = counter(key)
            limits.append("\(label) \(Int(v.0)) (\(rateText(v.0, v.1))/s)")
        }
        out += "  " + limits.prefix(3).joined(separator: "   ") + "\n"
        out += "  " + limits.dropFirst(3).joined(separator: "   ")
        out += "   banned addresses \(int(current.json["bannedAddresses"]))   banned piles \(int(current.json["bannedPiles"]))\n\n"

        out += lanesSection()
        out += outboxSection()
        out += offlineAuthorizationSection()
        out += clusterSection()

        // Process
        let p = current.json["process"]
        var proc = "  memory \(Format.bytes(num(p?["residentBytes"])))   cpu \(Format.duration(num(p?["cpuSeconds"])))"
        if let interval, let before = previous?.json["process"]?["cpuSeconds"]?.doubleValue {
            let share = max(0, num(p?["cpuSeconds"]) - before) / interval * 100
            proc += String(format: " (%.1f%% of a core)", share)
        }
        proc += "   open files \(int(p?["openFiles"]))"
        out += section("PROCESS") + proc + "\n"
        return out
    }

    /// "closed_by_pile 0.5 (12)  kicked 0 (1)" for the reasons with a non-zero total.
    private func byReason(_ key: String) -> String {
        let now = current.counters[key]?.objectValue ?? [:]
        let before = previous?.counters[key]?.objectValue ?? [:]
        let parts = now.keys.sorted().filter { num(now[$0]) > 0 }.map { k in
            "\(k) \(rateText(num(now[k]), before[k].map { num($0) })) (\(int(now[k])))"
        }
        return parts.isEmpty ? "none" : parts.joined(separator: "   ")
    }

    private func framesSection() -> String {
        let c = current.counters
        let inNow = c["framesIn"]?.objectValue ?? [:]
        let outNow = c["framesOut"]?.objectValue ?? [:]
        let inBefore = previous?.counters["framesIn"]?.objectValue ?? [:]
        let outBefore = previous?.counters["framesOut"]?.objectValue ?? [:]
        var table = TextTable(["type", "in/s", "out/s", "in", "out"], rightAligned: [1, 2, 3, 4], indent: "  ")
        for type in Set(inNow.keys).union(outNow.keys).sorted() {
            // A type seen in one direction only has no previous value in the other: count it from 0.
            let ib: Double? = previous == nil ? nil : num(inBefore[type])
            let ob: Double? = previous == nil ? nil : num(outBefore[type])
            table.add([
                type, rateText(num(inNow[type]), ib), rateText(num(outNow[type]), ob),
                String(int(inNow[type])), String(int(outNow[type])),
            ])
        }
        let bi = counter("bytesIn")
        let bo = counter("bytesOut")
        var out = section("FRAMES")
        out += table.rows.isEmpty ? "  none yet\n" : table.rendered
        out += "  bytes/s in \(rate(bi.0, bi.1).map { Format.bytes($0) } ?? "-")"
        out += "   out \(rate(bo.0, bo.1).map { Format.bytes($0) } ?? "-")"
        out += "   heartbeats/s \(rateText(counter("heartbeats").0, counter("heartbeats").1))\n\n"
        return out
    }

    private func lanesSection() -> String {
        var out = ""
        var note = ""
        if let rules = laneRules?["rules"]?.arrayValue {
            note = "rules v\(int(laneRules?["version"])): \(rules.count) rule\(rules.count == 1 ? "" : "s")"
            let lanes = rules.compactMap { $0["lane"]?.stringValue }
            if !lanes.isEmpty { note += " → " + orderedUnique(lanes).joined(separator: ", ") }
        } else if let v = current.json["extensions"]?["lanes"]?.doubleValue {
            note = "rules v\(Int(v))"
        }
        out += section("LANES", note)
        let sessions = current.json["sessionsByLane"]?.objectValue ?? [:]
        let list = sessions.keys.sorted().map { "\(Format.lane($0)) \(int(sessions[$0]))" }
        out += "  sessions  " + (list.isEmpty ? "none" : list.joined(separator: "   ")) + "\n"

        guard let hub = current.json["extensions"]?["hub"], hub != .null else {
            return out + "  no backend hub on this gateway\n\n"
        }
        let beforeHub = previous?.json["extensions"]?["hub"]
        let lanes = hub["lanes"]?.objectValue ?? [:]
        var table = TextTable(
            ["lane", "service", "events/s", "routed", "fallbacks/s", "fallbacks", "acks", "failures", "ejections", "overflows", "p50", "p99"],
            rightAligned: Set(2...11), indent: "  ")
        for lane in lanes.keys.sorted() {
            let services = lanes[lane]?.objectValue ?? [:]
            for service in services.keys.sorted() {
                guard let t = services[service] else { continue }
                let b = beforeHub?["lanes"]?[lane]?[service]
                let routed = num(t["routed"])
                let fallbacks = num(t["fallbacks"])
                let hasBefore = previous != nil
                let (p50, p99) = latency(t, before: b)
                table.add([
                    Format.lane(lane), service, rateText(routed, hasBefore ? num(b?["routed"]) : nil), String(Int(routed)),
                    rateText(fallbacks, hasBefore ? num(b?["fallbacks"]) : nil), String(Int(fallbacks)),
                    String(int(t["acks"])), String(int(t["failures"])), String(int(t["ejections"])), String(int(t["overflows"])),
                    p50.map(Format.duration) ?? "-", p99.map(Format.duration) ?? "-",
                ])
            }
        }
        out += table.rows.isEmpty ? "  no lane traffic yet\n" : table.rendered
        let instances = hub["instances"]?.arrayValue ?? []
        var states: [String: Int] = [:]
        for i in instances { states[i["state"]?.stringValue ?? "?", default: 0] += 1 }
        let stateLine = ["healthy", "warming", "ejected", "draining"].map { "\($0) \(states[$0] ?? 0)" }.joined(separator: "   ")
        out += "  instances \(instances.count): \(stateLine)"
        out += "   undeliverable \(int(hub["undeliverable"]))   pending replies \(int(hub["pendingReplies"]))\n"
        if !instances.isEmpty {
            var it = TextTable(["service", "instance", "lane", "state", "in-flight", "queued", "ejections"], rightAligned: [4, 5, 6], indent: "    ")
            for i in instances {
                it.add([
                    i["service"]?.stringValue ?? "?", i["instance"]?.stringValue ?? "?", Format.lane(i["lane"]?.stringValue ?? ""),
                    i["state"]?.stringValue ?? "?", String(int(i["inFlight"])), String(int(i["queued"])), String(int(i["ejections"])),
                ])
            }
            out += it.rendered
        }
        return out + "\n"
    }

    /// Delivery latency p50/p99: over the interval when it saw deliveries, else since start.
    private func latency(_ t: JSONValue, before: JSONValue?) -> (Double?, Double?) {
        guard let now = Self.deliveryLatency(t["latencyBuckets"]) else { return (nil, nil) }
        var latency = now
        if let earlier = Self.deliveryLatency(before?["latencyBuckets"]), let delta = now.since(earlier), delta.count > 0 {
            latency = delta
        }
        return (latency.quantile(0.5), latency.quantile(0.99))
    }

    /// The hub's exported delivery-latency counts (`BackendLaneTraffic.bounds`, plus +Inf).
    static func deliveryLatency(_ counts: JSONValue?) -> LatencyBuckets? {
        guard let list = counts?.arrayValue else { return nil }
        return LatencyBuckets(bounds: BackendLaneTraffic.bounds, counts: list.map { Int($0.doubleValue ?? 0) })
    }

    private func outboxSection() -> String {
        guard let outbox = current.json["extensions"]?["outbox"], outbox != .null else {
            return section("OUTBOX") + "  not reported by this gateway\n\n"
        }
        let (depth, oldest) = OutboxFigures.of(outbox)
        var line = "  depth \(depth.map { String($0) } ?? "?")"
        line += "   oldest \(oldest.map(Format.duration) ?? "-")"
        if let stored = outbox["events"]?.intValue { line += "   stored \(stored)" }
        return section("OUTBOX") + line + "\n\n"
    }

    /// Starts the gateway decided while no backend answered (CONFIGURATION.md, Offline
    /// authorization); omitted on a gateway that does not report it.
    private func offlineAuthorizationSection() -> String {
        guard let offline = current.json["extensions"]?["offlineAuthorization"], offline != .null else { return "" }
        func counts(_ key: String) -> String {
            let all = offline[key]?.objectValue ?? [:]
            let parts = all.keys.sorted().filter { num(all[$0]) > 0 }.map { "\($0) \(int(all[$0]))" }
            return parts.isEmpty ? "none" : parts.joined(separator: " ")
        }
        var line = "  mode \(offline["mode"]?.stringValue ?? "?")   approved \(counts("approved"))   refused \(counts("refused"))"
        line += "   cached decisions \(int(offline["cachedDecisions"]))   issued \(int(offline["issued"]))"
        return section("OFFLINE AUTHORIZATION") + line + "\n\n"
    }

    /// Cluster mode (docs/CLUSTER.md): the NATS state, each member with its piles, the pile
    /// directory and takeovers. Absent on a gateway not in cluster mode.
    private func clusterSection() -> String {
        guard let cluster = current.json["extensions"]?["cluster"], cluster != .null else { return "" }
        var out = section("CLUSTER", "\(cluster["name"]?.stringValue ?? "?") · node \(cluster["node"]?.stringValue ?? "?")")
        var nats = "  nats \(cluster["nats"]?.stringValue ?? "?")"
        if let server = cluster["natsServer"]?.stringValue { nats += " (\(server))" }
        nats += "   reconnects \(int(cluster["natsReconnects"]))"
        out += nats + "\n"
        var table = TextTable(["node", "piles", "api", "last seen"], rightAligned: [1], indent: "  ")
        for member in cluster["nodes"]?.arrayValue ?? [] {
            table.add([
                member["node"]?.stringValue ?? "?", String(int(member["piles"])), member["api"]?.stringValue ?? "-",
                Format.duration(num(member["lastSeenSeconds"])),
            ])
        }
        out += table.rendered
        if let d = cluster["directory"], d != .null {
            out += "  directory \(int(d["entries"])) piles   this node's \(int(d["owned"]))   queued \(int(d["queued"]))"
            out += "   write failures \(int(d["writeFailures"]))   cleaned \(int(d["cleaned"]))\n"
            if let following = d["following"]?.stringValue {
                out += "  directory follows \(following)   loads \(int(d["loads"]))   gaps \(int(d["gaps"]))"
                out += "   batches out \(int(d["batchesPublished"]))   in \(int(d["batchesReceived"]))\n"
            }
        }
        if let t = cluster["takeovers"], t != .null {
            out += "  takeovers asked \(int(t["asked"]))   closed here \(int(t["closed"]))   unanswered \(int(t["unanswered"]))"
            out += "   offline unacknowledged \(int(t["unacknowledged"]))\n"
        }
        return out + "\n"
    }

    private func orderedUnique(_ list: [String]) -> [String] {
        var seen: Set<String> = []
        return list.filter { seen.insert($0).inserted }
    }
}
