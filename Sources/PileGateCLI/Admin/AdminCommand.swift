import ArgumentParser
import Foundation

/// Shared plumbing of the admin verbs: run, and turn a failure into one stderr line and an exit code.
enum AdminCommand {
    static func run(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let failure as AdminClient.Failure {
            printError(failure.description)
            throw failure.exitCode
        }
    }

    static func printError(_ line: String) {
        FileHandle.standardError.write(Data("pilegate: \(line)\n".utf8))
    }

    /// Writes text to stdout unbuffered (so a later stderr line cannot overtake it).
    static func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    /// Prints a JSON answer as it came, one document per line.
    static func printJSON(_ answer: AdminClient.Answer) {
        var text = answer.text
        while text.hasSuffix("\n") { text.removeLast() }
        write(text + "\n")
    }
}
