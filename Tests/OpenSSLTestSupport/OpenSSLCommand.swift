import Foundation

/// Runs the `openssl` command line, the independent reference the cipher is checked against
/// (by YKCCipherTests and PileGateTests, which share this one support target).
///
/// `scripts/setup.sh` installs the `openssl` package; the tests fail (not skip) without it.
public enum OpenSSLCommand {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// `openssl enc -<cipher> -e|-d -K <key> [-iv <iv>] -nosalt [-nopad]` over `input`.
    public static func enc(
        _ cipher: String, decrypt: Bool = false, keyHex: String, ivHex: String?, noPad: Bool, input: [UInt8]
    ) throws -> [UInt8] {
        var arguments = ["enc", "-\(cipher)", decrypt ? "-d" : "-e", "-K", keyHex, "-nosalt"]
        if let ivHex { arguments += ["-iv", ivHex] }
        if noPad { arguments.append("-nopad") }
        return try run(arguments + ["-in"], input: input)
    }

    /// `openssl dgst -sha256 -binary` over `input`.
    public static func sha256(_ input: [UInt8]) throws -> [UInt8] {
        try run(["dgst", "-sha256", "-binary"], input: input)  // dgst takes the file last, without -in
    }

    /// Runs `openssl arguments… <input file>`; the input is written to a temporary file.
    private static func run(_ arguments: [String], input: [UInt8]) throws -> [UInt8] {
        let inputURL = FileManager.default.temporaryDirectory
            .appendingPathComponent("ykccipher-\(UUID().uuidString).bin")
        try Data(input).write(to: inputURL)
        defer { try? FileManager.default.removeItem(at: inputURL) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments + [inputURL.path]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "openssl \(arguments.joined(separator: " ")) exited "
                + "\(process.terminationStatus): \(String(decoding: errors, as: UTF8.self))")
        }
        return Array(output)
    }
}
