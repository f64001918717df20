import ArgumentParser
import Foundation
import YKC

/// `pilegate lanes show|set FILE`: the lane rules (GET/PUT /v1/lanes).
struct LanesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lanes",
        abstract: "Show or replace the lane rules (GET/PUT /v1/lanes).",
        subcommands: [Show.self, Set.self])

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the lane rules in order (first match wins).")
        @OptionGroup var options: APIOptions
        @Flag(name: .long, help: "Print the API's JSON (a valid `lanes set` file).") var json = false

        func run() async throws {
            let client = try options.client()
            try await AdminCommand.run {
                let answer = try await client.get("/v1/lanes")
                if json { return AdminCommand.printJSON(answer) }
                AdminCommand.write(LanesCommand.render(answer.json ?? .null))
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace the lane rules with the ones in FILE (- for stdin).",
            discussion: """
                FILE holds {"rules":[{"lane":"gray","match":{...}}, ...]}, as `pilegate lanes show --json` prints it. \
                With "version": N in the file the change applies only on top of version N (409 otherwise). Nothing \
                changes when the gateway refuses the rules; its message names the rule and key.
                """)
        @OptionGroup var options: APIOptions
        @Argument(help: "A JSON file of rules, or - for stdin.") var file: String
        @Flag(name: .long, help: "Print the API's JSON.") var json = false

        func run() async throws {
            let client = try options.client()
            let body: Data
            do {
                body = file == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: file))
            } catch {
                AdminCommand.printError("cannot read \(file): \(error.localizedDescription)")
                throw ExitCode(1)
            }
            do {
                _ = try JSONValue.parse(body)
            } catch {
                AdminCommand.printError("\(file) is not valid JSON: \(error.description)")
                throw ExitCode(1)
            }
            try await AdminCommand.run {
                let answer = try await client.send("PUT", "/v1/lanes", body: body)
                if json { return AdminCommand.printJSON(answer) }
                AdminCommand.write("lane rules replaced\n" + LanesCommand.render(answer.json ?? .null))
            }
        }
    }

    static func render(_ doc: JSONValue) -> String {
        let rules = doc["rules"]?.arrayValue ?? []
        var out = "version \(doc["version"]?.intValue ?? 0)"
        if let at = doc["updatedAt"]?.stringValue { out += ", updated \(at)" }
        out += ", \(rules.count) rule\(rules.count == 1 ? "" : "s")\n"
        guard !rules.isEmpty else { return out + "no rules: every session is in the base lane\n" }
        var t = TextTable(["#", "lane", "match"], rightAligned: [0])
        for (i, r) in rules.enumerated() {
            let match = r["match"]?.objectValue ?? [:]
            let text = match.isEmpty ? "(every session)" : match.keys.sorted().map { "\($0)=\(match[$0]?.description ?? "")" }.joined(separator: " ")
            t.add([String(i + 1), r["lane"]?.stringValue ?? "?", text])
        }
        return out + t.rendered
    }
}
