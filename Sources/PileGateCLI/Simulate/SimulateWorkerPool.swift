import Foundation
import NIOConcurrencyHelpers
import PileSim

/// `pilegate simulate --workers N`: runs the fleet in N copies of this executable, each started
/// with this process's own `simulate` arguments plus `--worker-index i`, so that each holds only
/// its share of the piles' sockets (a process may hold only `ulimit -n` open files).
///
/// Each worker prints a `SimulateReport` as one JSON line on stdout every --report-interval and at
/// its end; its other lines (stderr) are passed on prefixed with "[worker i]". This process prints
/// the reports' sum as progress lines and the summary, fails when a worker fails or ends without
/// its summary, forwards SIGTERM/SIGINT to the workers, and stops them if they overrun the run's
/// length by more than `overrunGrace`. Workers stop by themselves when this process disappears.
struct SimulateWorkerPool {
    let command: SimulateCommand

    /// How long workers may run past --duration + --drain-timeout (stopping 19,000 piles takes a while).
    static let overrunGrace: Duration = .seconds(120)

    /// Reports and output streams of the workers, shared with the threads that read their pipes.
    final class Board: Sendable {
        struct State {
            var latest: [Int: SimulateReport] = [:]
            var final: [Int: SimulateReport] = [:]
            var openStreams = 0
        }
        let state = NIOLockedValueBox(State())

        func record(_ report: SimulateReport, from worker: Int) {
            state.withLockedValue { s in
                guard report.worker == worker else { return }
                s.latest[worker] = report
                if report.kind == .summary { s.final[worker] = report }
            }
        }
    }

    /// A worker's arguments: the `simulate` arguments this process got (from the word `simulate`
    /// on), without any `--worker-index`, plus `--worker-index index`.
    static func workerArguments(_ arguments: [String], index: Int) throws -> [String] {
        guard let at = arguments.firstIndex(of: "simulate") else {
            throw SimulateWorkerError("cannot find the simulate arguments in \(arguments.prefix(4).joined(separator: " "))…")
        }
        var kept: [String] = []
        var i = at
        while i < arguments.count {
            let arg = arguments[i]
            if arg == "--worker-index" {
                i += 2
                continue
            }
            if !arg.hasPrefix("--worker-index=") { kept.append(arg) }
            i += 1
        }
        return kept + ["--worker-index", String(index)]
    }

    /// This executable: /proc/self/exe on Linux, else the path it was started by.
    static func executable() -> URL {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            return URL(fileURLWithPath: path)
        }
        return URL(fileURLWithPath: CommandLine.arguments[0])
    }

    func run() async throws {
        let n = command.workers
        let board = Board()
        let exe = Self.executable()
        let runStartedAt = Date().timeIntervalSince1970
        let begin = ContinuousClock.now
        var processes: [Process] = []
        SimulateCommand.out(
            "simulate: \(command.piles) piles in \(n) worker processes of ~\(PileShare.largest(piles: command.piles, workers: n)) "
                + "(\(exe.path)) -> \(command.gateway)")
        for i in 0..<n {
            let p = Process()
            p.executableURL = exe
            p.arguments = try Self.workerArguments(CommandLine.arguments, index: i)
            let out = Pipe()
            let err = Pipe()
            p.standardOutput = out
            p.standardError = err
            p.standardInput = FileHandle.nullDevice
            do {
                try p.run()
            } catch {
                for q in processes where q.isRunning { q.terminate() }
                throw SimulateWorkerError("cannot start worker \(i) (\(exe.path)): \(error)")
            }
            processes.append(p)
            board.state.withLockedValue { $0.openStreams += 2 }
            Self.readLines(out.fileHandleForReading, board: board) { line in
                if let report = SimulateReport.parse(line) {
                    board.record(report, from: i)
                } else if !line.isEmpty {
                    SimulateCommand.out("[worker \(i)] \(line)")
                }
            }
            Self.readLines(err.fileHandleForReading, board: board) { line in
                if !line.isEmpty { SimulateCommand.out("[worker \(i)] \(line)") }
            }
        }
        let signals = Self.forwardSignals(to: processes.map(\.processIdentifier))
        defer { signals.forEach { $0.cancel() } }

        let step = Duration.nanoseconds(Int64(command.reportInterval * 1e9))
        var nextReport = begin + step
        let deadline = begin + .nanoseconds(Int64((command.duration + command.drainTimeout) * 1e9)) + Self.overrunGrace
        var announcedLogin = false
        var stopped = false
        while processes.contains(where: \.isRunning) {
            try? await Task.sleep(for: .milliseconds(100))
            let latest = board.state.withLockedValue { Array($0.latest.values) }
            if !announcedLogin, latest.count == n,
                let totals = try? SimulateTotals(reports: latest, workers: n, piles: command.piles, runStartedAt: runStartedAt),
                let t = totals.timeToAllLoggedIn
            {
                announcedLogin = true
                SimulateCommand.out(String(format: "simulate: all %d piles logged in after %.2f s", command.piles, t))
            }
            if ContinuousClock.now >= nextReport {
                nextReport = nextReport + step
                if let totals = try? SimulateTotals(reports: latest, workers: n, piles: command.piles, runStartedAt: runStartedAt) {
                    SimulateCommand.out(
                        SimulateCommand.progress(totals.counters, elapsed: ContinuousClock.now - begin)
                            + " workers=\(latest.count)/\(n)")
                }
            }
            if !stopped && ContinuousClock.now >= deadline {
                stopped = true
                SimulateCommand.out("simulate: workers overran the run by \(Self.overrunGrace); stopping them")
                for p in processes where p.isRunning { p.terminate() }
            }
        }
        // The pipes' last lines (the summaries) may still be on their way.
        let drained = ContinuousClock.now + .seconds(10)
        while board.state.withLockedValue({ $0.openStreams }) > 0 && ContinuousClock.now < drained {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let elapsed = ContinuousClock.now - begin

        var failures: [String] = []
        let finals = board.state.withLockedValue { $0.final }
        for (i, p) in processes.enumerated() {
            p.waitUntilExit()
            let how = p.terminationReason == .uncaughtSignal ? "was killed by signal" : "exited with status"
            if p.terminationStatus != 0 || p.terminationReason == .uncaughtSignal {
                failures.append("worker \(i) \(how) \(p.terminationStatus)\(finals[i] == nil ? " without a summary" : "")")
            } else if finals[i] == nil {
                failures.append("worker \(i) ended without a summary")
            }
        }
        let totals = try SimulateTotals(
            reports: finals.keys.sorted().compactMap { finals[$0] }, workers: n, piles: command.piles,
            runStartedAt: runStartedAt, workerFailures: failures)
        try command.finish(totals, elapsed: elapsed)
    }

    /// Reads `handle` on a thread of its own until end of file, handing over each line (without
    /// its newline); a line longer than 1 MiB is cut there. Counts the stream closed on the board.
    static func readLines(_ handle: FileHandle, board: Board, _ onLine: @escaping @Sendable (Substring) -> Void) {
        let thread = Thread {
            var buffer: [UInt8] = []
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                buffer.append(contentsOf: chunk)
                var start = 0
                while let nl = buffer[start...].firstIndex(of: 0x0A) {
                    onLine(Substring(String(decoding: buffer[start..<nl], as: UTF8.self)))
                    start = nl + 1
                }
                buffer.removeFirst(start)
                if buffer.count > 1 << 20 {
                    onLine(Substring(String(decoding: buffer, as: UTF8.self)))
                    buffer.removeAll()
                }
            }
            if !buffer.isEmpty { onLine(Substring(String(decoding: buffer, as: UTF8.self))) }
            board.state.withLockedValue { $0.openStreams -= 1 }
        }
        thread.start()
    }

    /// SIGTERM and SIGINT to this process go on to the workers as SIGTERM, then this process exits
    /// (128 + the signal): a script that stops the run stops all of it.
    static func forwardSignals(to pids: [Int32]) -> [any DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { sig in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                for pid in pids { kill(pid, SIGTERM) }
                exit(128 + sig)
            }
            source.resume()
            return source
        }
    }
}
