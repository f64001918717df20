import ArgumentParser
import Foundation

/// `pilegate bans list|lift`: see the flapping bans in force and lift one.
struct BansCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bans",
        abstract: "List and lift flapping bans (GET /v1/bans, DELETE /v1/bans/KEY).",
        subcommands: [List.self, Lift.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the flapping bans in force, by pile id and by source address.")

        @OptionGroup var options: APIOptions
        @Flag(name: .long, help: "Print the API's JSON.") var json = false

        func run() async throws {
            let client = try options.client()
            try await AdminCommand.run {
                let answer = try await client.get("/v1/bans")
                if json { return AdminCommand.printJSON(answer) }
                let bans = answer.json?["bans"]?.arrayValue ?? []
                guard !bans.isEmpty else { return AdminCommand.write("no bans\n") }
                var table = TextTable(["key", "kind", "since", "remaining", "why"], rightAligned: [3])
                for b in bans {
                    let window = b["windowSeconds"]?.doubleValue.map { $0 == $0.rounded() ? "\(Int($0))s" : "\($0)s" } ?? "?"
                    table.add([
                        b["key"]?.stringValue ?? "?", b["kind"]?.stringValue ?? "?", b["since"]?.stringValue ?? "-",
                        b["remainingSeconds"]?.intValue.map { "\($0)s" } ?? "-",
                        "\(b["connects"]?.intValue.map(String.init) ?? "?") connects in \(window) (limit \(b["limit"]?.intValue.map(String.init) ?? "?"))",
                    ])
                }
                AdminCommand.write(table.rendered)
            }
        }
    }

    struct Lift: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lift one ban; the pile or address may connect again at once.")

        @OptionGroup var options: APIOptions
        @Argument(help: "The ban's key: pile:<pile id> or addr:<IP address>.") var key: String
        @Flag(name: .long, help: "Print the API's JSON.") var json = false

        func validate() throws {
            let valid = (key.hasPrefix("pile:") || key.hasPrefix("addr:")) && key.count > 5 && key.count <= 80
                && key.allSatisfy { $0.isASCII && ($0.isHexDigit || $0 == ":" || $0 == "." || $0.isLetter) }
            guard valid else { throw ValidationError("invalid ban key '\(key)': expected pile:<pile id> or addr:<IP address>") }
        }

        func run() async throws {
            let client = try options.client()
            try await AdminCommand.run {
                let answer = try await client.send("DELETE", "/v1/bans/\(key)")
                if json { return AdminCommand.printJSON(answer) }
                AdminCommand.write("lifted \(answer.json?["lifted"]?.stringValue ?? key)\n")
            }
        }
    }
}
