import ArgumentParser
import Foundation
import PileGate
import YKC

/// `pilegate tokens create|list|revoke`: the API's bearer tokens.
///
/// Two ways to reach them, because an operator needs both:
/// - `--data DIR` opens the gateway's data directory (its `pilegate.sqlite`) directly. This is the
///   bootstrap path — the first token, when no token exists and the API may not be reachable — and
///   the recovery path when every admin token is lost. It needs write access to the directory,
///   which is the real boundary; a running gateway on that directory picks the change up within
///   a second.
/// - Otherwise the verbs call the running gateway's API (`--api`, `--token` with `admin:read` to
///   list, `admin:write` to create or revoke): remote management. While no token exists the API
///   is open (loopback-only unless `apiInsecure`), so the first token can also be made this way.
struct TokensCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens",
        abstract: "Create, list or revoke API bearer tokens (on the data directory with --data, else through the API).",
        subcommands: [Create.self, List.self, Revoke.self])

    /// Where the tokens are: a data directory or the API.
    struct Target: ParsableArguments {
        @Option(
            name: .long,
            help: ArgumentHelp("Work on this data directory's database directly instead of the API (bootstrap, recovery).", valueName: "DIR"))
        var data: String?

        @OptionGroup var api: APIOptions
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a token and print its secret once (on stdout; store it now, it cannot be shown again).",
            discussion: """
                Scopes: events:subscribe, commands:send, admin:read, admin:write. Limits are comma-separated lists; \
                leave one out for "any". --lanes= (empty) means the base lane only; ",gray" the base lane and gray.
                """)
        @Option(name: .long, help: "The token's name (letters, digits, '-', '_', '.').") var name: String
        @Option(name: .long, help: "Comma-separated scopes.") var scopes: String
        @Option(name: .long, help: "Limit subscriptions and commands to these lanes.") var lanes: String?
        @Option(name: .long, help: "Limit subscriptions to these services.") var services: String?
        @Option(name: .long, help: "Limit commands to these kinds (e.g. set_rate,remote_stop).") var commands: String?
        @OptionGroup var target: Target
        @Flag(name: .long, help: "Print {\"token\":{…},\"secret\":…} as JSON.") var json = false

        func makeToken() -> Result<APIToken, APITokenError> {
            Result { () throws(APITokenError) -> APIToken in
                let token = APIToken(
                    name: name, scopes: try APIScope.parse(TokensCommand.list(scopes) ?? []), lanes: TokensCommand.list(lanes, keepEmpty: true),
                    services: TokensCommand.list(services), commands: TokensCommand.list(commands))
                try token.validate()
                return token
            }
        }

        func run() async throws {
            let token: APIToken
            switch makeToken() {
            case .success(let t): token = t
            case .failure(let e):
                AdminCommand.printError(e.message)
                throw ExitCode(1)
            }
            if let data = target.data {
                let created = try await TokensCommand.local(data) { try await $0.create(token) }
                TokensCommand.printCreated(created.token, secret: created.secret, json: json)
                return
            }
            let client = try target.api.client()
            var body: [String: JSONValue] = ["name": .string(token.name), "scopes": .array(token.scopes.map { .string($0.rawValue) })]
            if let l = token.lanes { body["lanes"] = .array(l.map { .string($0) }) }
            if let s = token.services { body["services"] = .array(s.map { .string($0) }) }
            if let c = token.commands { body["commands"] = .array(c.map { .string($0) }) }
            try await AdminCommand.run {
                let answer = try await client.send("POST", "/v1/tokens", body: Data(JSONValue.object(body).description.utf8))
                if json { return AdminCommand.printJSON(answer) }
                guard let secret = answer.json?["secret"]?.stringValue else {
                    AdminCommand.printError("the gateway's answer has no secret: \(answer.text.prefix(200))")
                    throw ExitCode(1)
                }
                TokensCommand.printCreated(token, secret: secret, json: false)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens: name, scopes, limits, creation time (never secrets).")
        @OptionGroup var target: Target
        @Flag(name: .long, help: "Print {\"tokens\":[…]} as JSON.") var json = false

        func run() async throws {
            let tokens: [APIToken]
            if let data = target.data {
                tokens = try await TokensCommand.local(data) { $0.list() }
            } else {
                let client = try target.api.client()
                var fetched: [APIToken] = []
                try await AdminCommand.run {
                    let answer = try await client.get("/v1/tokens")
                    let decoder = JSONDecoder()
                    decoder.dateDecodingStrategy = .iso8601
                    struct Page: Decodable { var tokens: [APIToken] }
                    guard let page = try? decoder.decode(Page.self, from: answer.data) else {
                        AdminCommand.printError("unexpected answer from GET /v1/tokens: \(answer.text.prefix(200))")
                        throw ExitCode(1)
                    }
                    fetched = page.tokens
                }
                tokens = fetched
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                encoder.dateEncodingStrategy = .iso8601
                let data = try encoder.encode(["tokens": tokens])
                return AdminCommand.write(String(decoding: data, as: UTF8.self) + "\n")
            }
            var table = TextTable(["name", "scopes", "lanes", "services", "commands", "created"])
            let stamp = ISO8601DateFormatter()
            for t in tokens {
                func show(_ l: [String]?) -> String { l.map { $0.map { $0.isEmpty ? "(base)" : $0 }.joined(separator: ",") } ?? "*" }
                table.add([t.name, t.scopes.map(\.rawValue).joined(separator: ","), show(t.lanes), show(t.services), show(t.commands), stamp.string(from: t.createdAt)])
            }
            AdminCommand.write(tokens.isEmpty ? "no tokens (the API requires none)\n" : table.rendered)
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token by name; requests with it fail from then on.")
        @Argument(help: "The token's name.") var name: String
        @OptionGroup var target: Target

        func run() async throws {
            if let data = target.data {
                guard try await TokensCommand.local(data, { try await $0.revoke(name: name) }) else {
                    AdminCommand.printError("no token named '\(name)'")
                    throw ExitCode(1)
                }
            } else {
                let client = try target.api.client()
                let path = "/v1/tokens/" + (name.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? name)
                try await AdminCommand.run { _ = try await client.send("DELETE", path) }
            }
            AdminCommand.write("token '\(name)' revoked\n")
        }
    }

    /// Runs `body` on the data directory's token store; a database problem is one stderr line.
    static func local<T>(_ directory: String, _ body: (TokenStore) async throws -> T) async throws -> T {
        do {
            return try await body(try TokenStore(directory: directory))
        } catch let e as APITokenError {
            AdminCommand.printError(e.message)
            throw ExitCode(1)
        } catch {
            AdminCommand.printError("cannot use the tokens in \(directory): \(error)")
            throw ExitCode(1)
        }
    }

    /// `a,b` → ["a","b"]; nil stays nil. With `keepEmpty` (lanes, where "" is the base lane) an
    /// empty text is [""] and empty entries are kept.
    static func list(_ text: String?, keepEmpty: Bool = false) -> [String]? {
        guard let text else { return nil }
        let parts = text.split(separator: ",", omittingEmptySubsequences: !keepEmpty).map { $0.trimmingCharacters(in: .whitespaces) }
        return keepEmpty ? parts : parts.filter { !$0.isEmpty }
    }

    static func printCreated(_ token: APIToken, secret: String, json: Bool) {
        if json {
            AdminCommand.write(#"{"name":"\#(token.name)","secret":"\#(secret)"}"# + "\n")
            return
        }
        AdminCommand.write(secret + "\n")
        FileHandle.standardError.write(
            Data("pilegate: token '\(token.name)' created (\(token.scopes.map(\.rawValue).joined(separator: ","))); the secret above is shown only once\n".utf8))
    }
}
