import Foundation
import PileSim

/// What one fleet of `pilegate simulate` has done so far: the line a worker process prints (one
/// JSON object per line on its stdout) for the process that started it, and the input of the
/// summary in a single-process run. Times are wall-clock seconds since 1970, so the reports of
/// processes started at different moments line up.
struct SimulateReport: Codable, Sendable, Hashable {
    enum Kind: String, Codable, Sendable {
        /// Every --report-interval while running.
        case progress
        /// Once, at the end, after the drain.
        case summary
    }

    var kind: Kind
    /// The worker's index; 0 in a single-process run.
    var worker: Int
    /// Piles in this fleet (the worker's share).
    var piles: Int
    /// When this fleet began connecting.
    var startedAt: Double
    /// When every pile of this fleet was first logged in at once; nil until then.
    var allLoggedInAt: Double?
    /// When the --bills-per-minute / --bills-in-flight load began; nil without one (or not yet).
    var billsStartedAt: Double?
    /// Bills acked before the bill load began (charging bills), left out of the bill rate.
    var billsAckedBeforeLoad: Int = 0
    /// When the last 0x40 so far arrived (sampled every 50 ms); nil before the first.
    var lastBillAckAt: Double?
    var counters: SimulatorCounters.Snapshot
    /// Piles per phase and per last close reason, in the summary only.
    var phases: [String: Int]?
    var lastCloseReasons: [String: Int]?
    /// Failed writes to --acked-bills-out.
    var ackFileErrors: Int = 0

    /// The report as one line of JSON.
    func line() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// A report from a worker's output line; nil for any other line.
    static func parse(_ line: Substring) -> SimulateReport? {
        guard line.first == "{" else { return nil }
        return try? JSONDecoder().decode(SimulateReport.self, from: Data(line.utf8))
    }
}
