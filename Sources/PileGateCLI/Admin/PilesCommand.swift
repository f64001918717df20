import ArgumentParser
import Foundation
import YKC

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `pilegate piles list|show|kick`: look piles up and drop a pile's connection.
struct PilesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "piles",
        abstract: "List, show and kick piles (GET /v1/piles, GET /v1/piles/ID, DELETE /v1/piles/ID/connection).",
        subcommands: [List.self, Show.self, Kick.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List piles by id, a page at a time.",
            discussion: "The registry's piles in id order; --online lists only piles connected to this gateway now. "
                + "When there are more, the last line says which --after ID gives the next page.")

        @OptionGroup var options: APIOptions
        @Flag(name: .long, help: "Only piles online on this gateway.") var online = false
        @Flag(name: .long, help: "Only piles that are offline.") var offline = false
        @Option(name: .long, help: "Piles per page (1...10000).") var limit: Int = 100
        @Option(name: .long, help: "Start after this pile id (the previous page's next).") var after: String?
        @Flag(name: .long, help: "Print the API's JSON.") var json = false

        func validate() throws {
            if online && offline { throw ValidationError("--online and --offline exclude each other") }
            guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be 1...10000") }
        }

        func run() async throws {
            let client = try options.client()
            try await AdminCommand.run {
                var query = [URLQueryItem(name: "limit", value: String(limit))]
                if online { query.append(URLQueryItem(name: "online", value: "true")) }
                if offline { query.append(URLQueryItem(name: "online", value: "false")) }
                if let after { query.append(URLQueryItem(name: "after", value: after)) }
                let answer = try await client.get("/v1/piles", query: query)
                if json { return AdminCommand.printJSON(answer) }
                let page = answer.json ?? .null
                var table = TextTable(
                    ["pile", "state", "lane", "type", "guns", "proto", "firmware", "address", "since"], rightAligned: [4, 5])
                let piles = page["piles"]?.arrayValue ?? []
                for entry in piles {
                    let p = entry["pile"] ?? .null
                    let s = entry["session"]
                    let live = s != nil && s != .null
                    let state = live ? "online" : (p["offlineReason"]?.stringValue.map { "offline (\($0))" } ?? "offline")
                    let lane = live ? s?["lane"]?.stringValue : p["lane"]?.stringValue
                    let since = live ? s?["loggedInAt"]?.stringValue : (p["offlineAt"]?.stringValue ?? p["lastLogin"]?.stringValue)
                    table.add([
                        p["id"]?.stringValue ?? "?", state, Format.lane(lane ?? ""), p["pileType"]?.stringValue ?? "-",
                        p["gunCount"]?.intValue.map(String.init) ?? "-", p["protocolVersion"]?.intValue.map(String.init) ?? "-",
                        p["firmware"]?.stringValue ?? "-",
                        (live ? s?["remoteAddress"]?.stringValue : p["lastAddress"]?.stringValue) ?? "-", since ?? "-",
                    ])
                }
                var out = piles.isEmpty ? "no piles\n" : table.rendered
                if let next = page["next"]?.stringValue {
                    out += "more: pilegate piles list\(online ? " --online" : "")\(offline ? " --offline" : "") --limit \(limit) --after \(next)\n"
                }
                AdminCommand.write(out)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one pile: its registry record and live session.")

        @OptionGroup var options: APIOptions
        @Argument(help: "The pile id (up to 14 digits).") var pile: String
        @Flag(name: .long, help: "Print the API's JSON.") var json = false

        func run() async throws {
            let client = try options.client()
            try await AdminCommand.run {
                let answer = try await client.get("/v1/piles/\(try PilesCommand.pathSegment(pile))")
                if json { return AdminCommand.printJSON(answer) }
                AdminCommand.write(Self.render(answer.json ?? .null))
            }
        }

        static func render(_ view: JSONValue) -> String {
            let p = view["pile"] ?? .null
            let s = view["session"].flatMap { $0 == .null ? nil : $0 }
            var rows: [(String, String)] = [("pile", p["id"]?.stringValue ?? "?")]
            rows.append(("state", s != nil ? "online" : "offline"))
            func add(_ label: String, _ v: JSONValue?) {
                guard let v, v != .null else { return }
                rows.append((label, v.stringValue ?? v.description))
            }
            if let lane = (s?["lane"] ?? p["lane"])?.stringValue { rows.append(("lane", Format.lane(lane))) }
            add("type", p["pileType"])
            add("guns", p["gunCount"])
            add("protocol", p["protocolVersion"])
            add("firmware", p["firmware"])
            add("network", p["networkType"])
            add("carrier", p["carrier"])
            add("sim", p["sim"])
            add("provisioned", p["provisioned"])
            add("first seen", p["firstSeen"])
            add("last login", p["lastLogin"])
            add("last address", p["lastAddress"])
            if s == nil {
                add("offline since", p["offlineAt"])
                add("offline reason", p["offlineReason"])
            }
            add("node", p["node"])
            // A per-pile override of the connection limits (PUT /v1/piles/{id}/limits), applied at login.
            if let o = view["limits"]?.objectValue, !o.isEmpty {
                let keys = ["frameRatePerSecond", "frameBurst", "byteRatePerSecond", "byteBurst"]
                rows.append(("limits", keys.compactMap { k in o[k].map { "\(k)=\($0)" } }.joined(separator: " ")))
            }
            if let s {
                add("connection", s["connectionId"])
                add("remote address", s["remoteAddress"])
                add("connected at", s["connectedAt"])
                add("logged in at", s["loggedInAt"])
                add("frames in", s["state"]?["framesIn"])
                add("frames out", s["state"]?["framesOut"])
                add("last frame at", s["state"]?["lastFrameAt"])
            }
            let width = rows.map(\.0.count).max() ?? 0
            var out = rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n") + "\n"
            if let guns = s?["state"]?["guns"]?.arrayValue, !guns.isEmpty {
                var t = TextTable(["gun", "state", "status", "last heartbeat"], rightAligned: [0], indent: "  ")
                for g in guns {
                    t.add([
                        g["gun"]?.intValue.map(String.init) ?? "?", g["state"]?.stringValue ?? "-", g["status"]?.stringValue ?? "-",
                        g["lastHeartbeat"]?.stringValue ?? "-",
                    ])
                }
                out += "guns\n" + t.rendered
            }
            return out
        }
    }

    struct Kick: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Close a pile's connection (it reconnects and logs in again).")

        @OptionGroup var options: APIOptions
        @Argument(help: "The pile id.") var pile: String
        @Flag(name: .long, help: "Print the API's JSON.") var json = false

        func run() async throws {
            let client = try options.client()
            try await AdminCommand.run {
                let answer = try await client.send("DELETE", "/v1/piles/\(try PilesCommand.pathSegment(pile))/connection")
                if json { return AdminCommand.printJSON(answer) }
                let j = answer.json
                AdminCommand.write(
                    "kicked pile \(j?["kicked"]?.stringValue ?? pile) (connection \(j?["connection"]?.stringValue ?? "?"))\n")
            }
        }
    }

    /// A pile id as a path segment; anything but digits and hex letters is refused before sending.
    static func pathSegment(_ id: String) throws -> String {
        guard !id.isEmpty, id.count <= 14, id.allSatisfy(\.isHexDigit) else {
            throw ValidationError("invalid pile id '\(id)': expected up to 14 digits")
        }
        return id
    }
}
