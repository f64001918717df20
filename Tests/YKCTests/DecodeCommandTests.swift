import Foundation
import Testing

/// Runs the built `pilegate` executable: `pilegate decode` end to end (arguments, stdin, exit code).
@Suite("pilegate decode (executable)")
struct DecodeCommandTests {
    static let login = FrameReportTests.login
    static let badCRC = FrameReportTests.specHeartbeatBadCRC

    /// The executable next to the test bundle (`swift test` builds it into the same directory).
    static var executable: URL? {
        let candidates = [
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("pilegate"),
            Bundle.main.bundleURL.appendingPathComponent("pilegate"),
            repositoryRoot.appendingPathComponent(".build/debug/pilegate"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ arguments: [String], stdin: String? = nil) throws -> Run {
        let exe = try #require(executable, "pilegate executable not found; run `swift build` first")
        let p = Process()
        p.executableURL = exe
        p.arguments = ["decode"] + arguments
        let out = Pipe()
        let err = Pipe()
        let input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input
        try p.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        // Read before waiting so a full pipe cannot block the child.
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Run(
            status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
            stderr: String(decoding: e, as: UTF8.self))
    }

    static func lines(_ s: String) -> [String] { s.split(separator: "\n").map(String.init) }

    @Test("good frames: one JSON line each on stdout, exit 0")
    func goodFrames() throws {
        let r = try Self.run([Self.login, "68 0D 25 D3 00 03 20 23 12 12 00 00 10 01 00 D1 AC"])
        #expect(r.status == 0)
        #expect(r.stderr.isEmpty)
        let lines = Self.lines(r.stdout)
        #expect(lines.count == 2)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["envelope"] != nil && object?["message"] != nil)
        }
        #expect(lines.first?.hasPrefix(#"{"envelope":{"length":34,"sequence":"0019","encryption":0,"code":1,"codeHex":"0x01","name":"login""#) == true)
        #expect(lines.last?.contains(#""crcOrder":"highFirst""#) == true)
    }

    @Test("a bad frame is named on stderr, the others are still decoded, exit 1, no stack trace")
    func badFrame() throws {
        let r = try Self.run([Self.login, Self.badCRC, "680G", Self.login])
        #expect(r.status == 1)
        #expect(Self.lines(r.stdout).count == 2)
        let errors = Self.lines(r.stderr)
        #expect(errors.count == 2)
        #expect(errors.first?.hasPrefix("error: frame 2: CRC mismatch: wire 6890, computed F11A") == true)
        #expect(errors.last == "error: frame 3: bad hex: character 'G' at position 3 is not a hex digit")
        #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("Stack dump"))
    }

    @Test("without arguments frames are read from stdin, one per line")
    func stdin() throws {
        let r = try Self.run([], stdin: "# two frames\n\(Self.login)\n\n\(Self.login)\n680C0019\n")
        #expect(r.status == 1)
        #expect(Self.lines(r.stdout).count == 2)
        #expect(Self.lines(r.stderr) == ["error: frame 3: truncated frame: length byte 0x0C needs 16 bytes, only 4 given"])
    }

    @Test("several frames back to back in one argument")
    func backToBack() throws {
        let r = try Self.run([Self.login + Self.login])
        #expect(r.status == 0)
        #expect(Self.lines(r.stdout).count == 2)
    }
}
