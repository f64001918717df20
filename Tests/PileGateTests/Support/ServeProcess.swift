import Foundation
import NIOConcurrencyHelpers
import PileGate
import Testing

/// A real `pilegate serve` child process, for what only a process shows: start-up failures,
/// signals, exit codes, file limits. Settings go in as `PILEGATE_*` environment variables;
/// stderr (the log) is collected as it comes.
final class ServeProcess: Sendable {
    let process: Process
    let dataDirectory: String
    private let log = NIOLockedValueBox<String>("")
    /// When the termination handler ran (nil while the process runs).
    private let exitedAt = NIOLockedValueBox<Date?>(nil)
    /// Set when stderr reaches end of file: the termination handler can run before the last
    /// lines are read, so "exited" waits for both, but only for `logGrace`: a child spawned
    /// at the same moment by another test can inherit the pipe's write end and hold the end
    /// of file back for as long as it runs (Foundation's spawn does not close every
    /// descriptor), which once made a process that had exited look alive until the timeout.
    private let logClosed = NIOLockedValueBox<Bool>(false)
    private static let logGrace: TimeInterval = 0.5

    /// Starts `pilegate serve` with `settings` (keys as in CONFIGURATION.md) on top of test
    /// defaults (loopback, ephemeral ports unless given, a fresh data directory). With
    /// `fileLimit`, it runs under `sh -c 'ulimit -n N; exec …'`.
    static func start(
        _ settings: [String: String] = [:], arguments: [String] = [], dataDirectory: String? = nil, fileLimit: Int? = nil
    ) throws -> ServeProcess {
        let exe = try #require(CLI.executable, "pilegate executable not found; run `swift build` first")
        let dir = dataDirectory ?? NSTemporaryDirectory() + "pilegate-serve-" + UUID().uuidString
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PILEGATE_") }
        let defaults: [String: String] = [
            "nodeId": "serve-test", "pileHost": "127.0.0.1", "pilePort": "0", "apiHost": "127.0.0.1", "apiPort": "0",
            "dataDirectory": dir, "eventLoopThreads": "1", "timeSyncOnLogin": "false", "registryFlushInterval": "0.05",
            "logLevel": "info",
        ]
        for (k, v) in defaults.merging(settings, uniquingKeysWith: { $1 }) {
            env[GatewayConfiguration.environmentName(for: k)] = v
        }
        let p = Process()
        if let fileLimit {
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "ulimit -n \(fileLimit) && exec \"$0\" serve \"$@\"", exe.path] + arguments
        } else {
            p.executableURL = exe
            p.arguments = ["serve"] + arguments
        }
        p.environment = env
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        let serve = ServeProcess(process: p, dataDirectory: dir)
        let box = serve.log
        let done = serve.exitedAt
        let closed = serve.logClosed
        err.fileHandleForReading.readabilityHandler = { h in
            let d = h.availableData
            if d.isEmpty {
                closed.withLockedValue { $0 = true }
                h.readabilityHandler = nil
            } else {
                box.withLockedValue { $0 += String(decoding: d, as: UTF8.self) }
            }
        }
        p.terminationHandler = { _ in done.withLockedValue { $0 = Date() } }
        try p.run()
        return serve
    }

    private init(process: Process, dataDirectory: String) {
        self.process = process
        self.dataDirectory = dataDirectory
    }

    var stderr: String { log.withLockedValue { $0 } }
    var lines: [String] { stderr.split(separator: "\n").map(String.init) }
    /// The process ended and everything it wrote to stderr has been read.
    var hasExited: Bool {
        guard let at = exitedAt.withLockedValue({ $0 }) else { return false }
        return logClosed.withLockedValue { $0 } || Date().timeIntervalSince(at) > Self.logGrace
    }
    var status: Int32 { process.terminationStatus }

    /// The port from the "pilegate started" line (`piles` or `api` metadata).
    func port(_ key: String) -> Int? {
        guard let line = lines.first(where: { $0.contains("pilegate started") }),
            let range = line.range(of: "\(key)=")
        else { return nil }
        let rest = line[range.upperBound...].prefix { $0 != " " && $0 != "]" && $0 != "," }
        return rest.split(separator: ":").last.flatMap { Int($0) }
    }

    /// Waits for the "pilegate started" line; returns (pile port, API port).
    func waitUntilStarted(timeout: TimeInterval = 30) async throws -> (pile: Int, api: Int) {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let pile = port("piles"), let api = port("api") { return (pile, api) }
            if hasExited { break }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        throw ServeFailure(message: "pilegate serve did not start: \(stderr)")
    }

    /// Waits for exit; returns the seconds it took, or nil when it did not exit in time.
    func waitForExit(timeout: TimeInterval) async -> TimeInterval? {
        let start = Date()
        while Date().timeIntervalSince(start) < timeout {
            if hasExited { return Date().timeIntervalSince(start) }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        return hasExited ? Date().timeIntervalSince(start) : nil
    }

    func signal(_ s: Int32) { kill(process.processIdentifier, s) }

    /// Kills the process if it still runs and removes the data directory.
    func cleanUp() {
        if exitedAt.withLockedValue({ $0 }) == nil { kill(process.processIdentifier, SIGKILL) }
        if (dataDirectory as NSString).lastPathComponent.hasPrefix("pilegate-serve-") {
            try? FileManager.default.removeItem(atPath: dataDirectory)
        }
    }

    struct ServeFailure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}
