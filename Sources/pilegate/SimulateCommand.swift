import ArgumentParser

struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "simulate", abstract: "Drive simulated piles at a gateway.")
    func run() async throws { throw ValidationError("not yet implemented") }
}
