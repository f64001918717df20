import ArgumentParser

struct DecodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "decode", abstract: "Decode YKC frames given as hex and print JSON.")
    @Argument var hex: [String] = []
    func run() async throws { throw ValidationError("not yet implemented") }
}
