import ArgumentParser
import Foundation
import YKC

/// `pilegate stats`: a compact overview of a running gateway from `/v1/stats`.
struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Show what a running gateway is doing: connections, frames, errors, limits, lanes, outbox, process.",
        discussion: """
            Rates (per second) are the counter deltas between two snapshots taken --interval seconds apart, so a \
            one-shot run takes that long. --watch redraws the screen every --interval seconds like top (Ctrl-C \
            stops; --count N stops after N screens). --json prints the raw /v1/stats snapshot instead (one line \
            per snapshot with --watch). If the gateway cannot be reached it says so in one line on stderr and \
            exits 2.
            """)

    @OptionGroup var options: APIOptions

    @Flag(name: .long, help: "Refresh in place until interrupted.")
    var watch = false

    @Option(name: .long, help: "Seconds between snapshots (rates are computed over this interval).")
    var interval: Double = 1

    @Option(name: .long, help: "With --watch: stop after this many screens.")
    var count: Int?

    @Flag(name: .long, help: "Print the raw /v1/stats JSON snapshot.")
    var json = false

    func validate() throws {
        guard interval > 0, interval <= 3600 else { throw ValidationError("--interval must be in (0, 3600] seconds") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if count != nil && !watch { throw ValidationError("--count needs --watch") }
    }

    func run() async throws {
        let client = try options.client()
        try await AdminCommand.run {
            if json && !watch {
                AdminCommand.printJSON(try await client.get("/v1/stats"))
                return
            }
            var previous = try await fetch(client)
            if json { AdminCommand.write(previous.json.description + "\n") }
            var shown = json ? 1 : 0
            if !watch {
                try await sleep()
                let current = try await fetch(client)
                let rules = try? await client.get("/v1/lanes").json
                AdminCommand.write(StatsScreen(current: current, previous: previous, laneRules: rules).rendered)
                return
            }
            while count.map({ shown < $0 }) ?? true {
                if shown > 0 || !json { try await sleep() }
                let current: StatsSample
                do {
                    current = try await fetch(client)
                } catch let failure as AdminClient.Failure {
                    // Keep watching through a restart; say so in place of the screen.
                    if !json { AdminCommand.write("\u{1B}[H\u{1B}[2J") }
                    AdminCommand.printError(failure.description + " (retrying every \(Format.duration(interval)))")
                    shown += 1
                    continue
                }
                if json {
                    AdminCommand.write(current.json.description + "\n")
                } else {
                    let rules = try? await client.get("/v1/lanes").json
                    let screen = StatsScreen(current: current, previous: previous, laneRules: rules).rendered
                    AdminCommand.write("\u{1B}[H\u{1B}[2J" + screen)
                }
                previous = current
                shown += 1
            }
        }
    }

    private func sleep() async throws {
        try await Task.sleep(nanoseconds: UInt64(interval * 1e9))
    }

    private func fetch(_ client: AdminClient) async throws(AdminClient.Failure) -> StatsSample {
        let answer = try await client.get("/v1/stats")
        guard let json = answer.json, json["counters"] != nil else {
            throw .http(
                method: "GET", path: "/v1/stats", status: answer.status, code: "invalid_stats",
                message: "the answer is not a pilegate stats document")
        }
        return StatsSample(json: json, fetchedAt: Date())
    }
}
