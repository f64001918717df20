import ArgumentParser
import Foundation
import YKC

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `pilegate send PILE COMMAND`: sends a command frame to an online pile and prints its decoded reply.
struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send a command to an online pile and print its decoded reply (POST /v1/piles/ID/commands/COMMAND).",
        discussion: """
            COMMAND is a platform-initiated message name such as remote_start, remote_stop, billing_model_set, \
            reboot or time_sync (the gateway lists them when given an unknown one). Arguments are the message's \
            JSON fields: --arg gun=1 --arg balance=100 (a value that parses as JSON is sent as that JSON, \
            otherwise as a string; --arg k='"007"' forces a string), or --args-json '{...}' with --arg applied on \
            top. pileId is filled in. Prints the reply's event name and fields; exits 1 if the pile is offline, \
            does not answer within --timeout, or the arguments are refused. With --deliver-within N, a command \
            for a pile that is offline waits up to N seconds for it to log in: the gateway answers 202 with the \
            queued id (printed), and the result comes to backends as a command_result event.
            """)

    @OptionGroup var options: APIOptions
    @Argument(help: "The pile id.") var pile: String
    @Argument(help: "The command (message name).") var command: String
    @Option(name: .long, parsing: .singleValue, help: ArgumentHelp("A field of the message, key=value.", valueName: "key=value"))
    var arg: [String] = []
    @Option(name: .customLong("args-json"), help: ArgumentHelp("The message's fields as one JSON object.", valueName: "json"))
    var argsJSON: String?
    @Option(name: .long, help: "Seconds to wait for the pile's reply (the gateway's default when omitted).")
    var timeout: Double?
    @Option(
        name: .customLong("deliver-within"),
        help: "If the pile is offline, queue the command for it for this many seconds (1...604800) instead of failing.")
    var deliverWithin: Double?
    @Option(name: .long, help: "Send as a backend of this lane (refused if the pile is in another lane).")
    var lane: String?
    @Flag(name: .long, help: "Print the API's JSON.") var json = false

    /// The JSON object sent as the command's arguments.
    static func arguments(args: [String], json: String?) throws -> [String: JSONValue] {
        var object: [String: JSONValue] = [:]
        if let json {
            guard let parsed = try? JSONValue.parse(json), let o = parsed.objectValue else {
                throw ValidationError("--args-json must be a JSON object, got '\(json)'")
            }
            object = o
        }
        for a in args {
            guard let eq = a.firstIndex(of: "="), eq != a.startIndex else {
                throw ValidationError("--arg must be key=value, got '\(a)'")
            }
            let key = String(a[..<eq])
            let raw = String(a[a.index(after: eq)...])
            object[key] = (try? JSONValue.parse(raw)) ?? .string(raw)
        }
        return object
    }

    func validate() throws {
        if let timeout, !(timeout > 0 && timeout <= 600) { throw ValidationError("--timeout must be in (0, 600] seconds") }
        if let deliverWithin, !(deliverWithin >= 1 && deliverWithin <= 604_800) {
            throw ValidationError("--deliver-within must be in 1...604800 seconds")
        }
        _ = try PilesCommand.pathSegment(pile)
        guard !command.isEmpty, command.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
            throw ValidationError("invalid command name '\(command)'")
        }
        _ = try Self.arguments(args: arg, json: argsJSON)
    }

    func run() async throws {
        let client = try options.client()
        let body = JSONValue.object(try Self.arguments(args: arg, json: argsJSON)).description
        var query: [URLQueryItem] = []
        if let timeout { query.append(URLQueryItem(name: "timeout", value: String(timeout))) }
        if let lane { query.append(URLQueryItem(name: "lane", value: lane)) }
        if let deliverWithin { query.append(URLQueryItem(name: "deliverWithin", value: String(deliverWithin))) }
        try await AdminCommand.run {
            let answer = try await client.send(
                "POST", "/v1/piles/\(pile)/commands/\(command)", query: query, body: Data(body.utf8),
                timeout: (timeout ?? 30) + 10)
            if json { return AdminCommand.printJSON(answer) }
            let j = answer.json ?? .null
            if j["status"]?.stringValue == "queued", let id = j["id"]?.stringValue {
                AdminCommand.write(
                    "queued \(id): \(command) waits for pile \(pile) until \(j["expiresAt"]?.stringValue ?? "?"); "
                        + "its result comes to backends as a command_result event\n")
                return
            }
            guard j["ok"]?.boolValue == true, let reply = j["reply"] else {
                // A 200 without ok (should not happen): say what came back.
                AdminCommand.printError("\(command) to \(pile): \(j["error"]?.stringValue ?? "error"): \(j["message"]?.stringValue ?? answer.text)")
                throw ExitCode(1)
            }
            AdminCommand.write(Self.render(reply))
        }
    }

    static func render(_ reply: JSONValue) -> String {
        var out = "reply \(reply["event"]?.stringValue ?? "?")"
        if let code = reply["code"]?.intValue { out += String(format: " (0x%02X)", code) }
        out += "\n"
        let data = reply["data"]?.objectValue ?? [:]
        let width = data.keys.map(\.count).max() ?? 0
        for k in data.keys.sorted() {
            let v = data[k] ?? .null
            out += "  " + k.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + (v.stringValue ?? v.description) + "\n"
        }
        return out
    }
}
