import ArgumentParser

/// The `pilegate` executable: the gateway and the tools around it.
@main
struct PileGateCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pilegate",
        abstract: "A TCP gateway for EV charging piles speaking the YKC (云快充) protocol V1.5/V1.6.",
        subcommands: [
            ServeCommand.self, StatsCommand.self, PilesCommand.self, BansCommand.self, LanesCommand.self, SendCommand.self,
            OutboxCommand.self, DecodeCommand.self, SimulateCommand.self, TailCommand.self, TokensCommand.self,
        ]
    )
}
