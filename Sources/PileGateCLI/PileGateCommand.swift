import ArgumentParser

/// The `pilegate` command line: the gateway and the tools around it.
///
/// The commands live in this library rather than in the executable so that their parsing,
/// validation, formatting and scanners can be unit-tested (`Tests/PileGateCLITests`); the
/// `pilegate` executable (`Sources/pilegate/main.swift`) only runs this command.
public struct PileGateCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "pilegate",
        abstract: "A TCP gateway for EV charging piles speaking the YKC (云快充) protocol V1.5/V1.6.",
        subcommands: [
            ServeCommand.self, StatsCommand.self, PilesCommand.self, BansCommand.self, LanesCommand.self, SendCommand.self,
            OutboxCommand.self, DecodeCommand.self, SimulateCommand.self, TailCommand.self, TokensCommand.self,
        ]
    )

    public init() {}
}
