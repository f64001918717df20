import ArgumentParser
import Foundation
import YKC

/// `pilegate decode`: turns YKC frames given as hex into one JSON object per frame per line.
///
/// It is the tool for "what did this pile just send?": frames come from gateway logs, captures or
/// vendor documents. All formatting lives in `YKCDecodeSession` (YKC target) so it is unit-tested;
/// this command only moves text between the session and stdin/stdout/stderr. Problems are printed
/// one per line on stderr and the remaining frames are still decoded; the exit code is 1 if any
/// frame failed, so scripts notice.
struct DecodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Decode YKC frames given as hex and print JSON.",
        discussion: """
            Each argument is one frame (spaces inside are allowed, e.g. "68 0C 00 19 ..."), or several
            frames back to back. Without arguments, frames are read from stdin, one per line; blank lines
            and lines starting with # are skipped. Output: one JSON object per frame per line,
            {"envelope":{...},"message":{...}}. Bad hex, truncated frames, bad length bytes and CRC
            mismatches are reported on stderr as "error: frame N: ..." and make the exit status 1.
            The JSON form is described in docs/PROTOCOL.md and protocol-specs/ykc-v1.6.json.
            """
    )

    @Argument(help: "Frames as hex. Reads stdin (one frame per line) when omitted.")
    var hex: [String] = []

    @Flag(help: "Decode frames even when their CRC matches in neither byte order (crcOrder \"mismatch\").")
    var ignoreCRC = false

    func run() throws {
        var session = YKCDecodeSession(ignoreCRC: ignoreCRC)
        if hex.isEmpty {
            while let line = readLine(strippingNewline: true) {
                guard let input = YKCDecodeSession.input(fromLine: line) else { continue }
                emit(session.decode(input))
            }
        } else {
            for argument in hex { emit(session.decode(argument)) }
        }
        if session.failureCount > 0 { throw ExitCode(1) }
    }

    private func emit(_ outputs: [YKCDecodeOutput]) {
        for output in outputs {
            switch output {
            // Unbuffered writes to both streams, so stdout and stderr lines keep the input order.
            case .json(let line): FileHandle.standardOutput.write(Data((line + "\n").utf8))
            case .error(let message): FileHandle.standardError.write(Data((message + "\n").utf8))
            }
        }
    }
}
