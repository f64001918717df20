import Foundation
import PileSim

/// The figures of a whole `pilegate simulate` run, added up from its fleets' reports (one per
/// worker process, or the one fleet of a single-process run): counters summed, latency histograms
/// merged bucket by bucket, times taken from the slowest worker.
struct SimulateTotals: Sendable {
    /// Workers started and reports received (a worker that died leaves a gap).
    var workers: Int
    var reports: Int
    var piles: Int
    var counters: SimulatorCounters.Snapshot
    /// Seconds from the run's start until every pile of every worker had logged in; nil when some
    /// worker never got all its piles in (or did not report).
    var timeToAllLoggedIn: Double?
    /// Bills acked per second from the start of the bill load to the last 0x40 (charging bills
    /// acked before the load began left out); nil without a bill load or before the first ack.
    var billsAckedPerSecond: Double?
    /// Acked bills counted in `billsAckedPerSecond`.
    var billsAckedInLoad: Int
    var phases: [String: Int]
    var lastCloseReasons: [String: Int]
    var ackFileErrors: Int
    /// Worker problems ("worker 2 exited with status 1 without a summary").
    var workerFailures: [String]

    /// Adds up `reports` (the latest of each worker) of a run of `piles` piles over `workers`
    /// workers that started at `runStartedAt` (seconds since 1970).
    init(
        reports: [SimulateReport], workers: Int, piles: Int, runStartedAt: Double, workerFailures: [String] = []
    ) throws {
        self.workers = workers
        self.reports = reports.count
        self.piles = piles
        counters = try SimulatorCounters.Snapshot.sum(reports.map(\.counters))
        let logins = reports.map(\.allLoggedInAt)
        if reports.count == workers, piles > 0, logins.allSatisfy({ $0 != nil }) {
            timeToAllLoggedIn = max(0, (logins.compactMap { $0 }.max() ?? runStartedAt) - runStartedAt)
        }
        let starts = reports.compactMap(\.billsStartedAt)
        let lastAck = reports.compactMap(\.lastBillAckAt).max()
        billsAckedInLoad = reports.filter { $0.billsStartedAt != nil }.reduce(0) {
            $0 + max(0, $1.counters.billsAcked - $1.billsAckedBeforeLoad)
        }
        if let first = starts.min(), let lastAck, lastAck > first, billsAckedInLoad > 0 {
            billsAckedPerSecond = Double(billsAckedInLoad) / (lastAck - first)
        }
        phases = reports.reduce(into: [:]) { sum, r in r.phases?.forEach { sum[$0.key, default: 0] += $0.value } }
        lastCloseReasons = reports.reduce(into: [:]) { sum, r in
            r.lastCloseReasons?.forEach { sum[$0.key, default: 0] += $0.value }
        }
        ackFileErrors = reports.reduce(0) { $0 + $1.ackFileErrors }
        self.workerFailures = workerFailures
    }

    /// Connect failures, rejected and timed-out logins, heartbeat link drops, parse errors and
    /// abandoned bills: what went wrong, in one number.
    var errors: Int {
        counters.connectFailures + counters.loginsRejected + counters.loginTimeouts + counters.heartbeatTimeouts
            + counters.parseErrors + counters.billsAbandoned
    }

    /// The human summary: the single-process one, then the run-wide lines.
    func summary(elapsed: Duration) -> String {
        var text = SimulateCommand.summary(counters, piles: piles, elapsed: elapsed)
        let login = timeToAllLoggedIn.map { String(format: "%.2f s after the start", $0) } ?? "not reached"
        text += "\n  all logged in    \(login)"
        if let rate = billsAckedPerSecond {
            text += "\n  bill load        \(billsAckedInLoad) acked, \(String(format: "%.0f", rate))/s (load start -> last 0x40)"
        }
        text += "\n  errors           \(errors)"
        if workers > 1 { text += "\n  workers          \(workers) started, \(reports) reported" }
        if !phases.isEmpty {
            text += "\n  pile phases      " + phases.sorted { $0.value > $1.value }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        if !lastCloseReasons.isEmpty {
            text += "\n  last close       "
                + lastCloseReasons.sorted { $0.value > $1.value }.prefix(5).map { "\($0.key) (\($0.value))" }.joined(separator: "; ")
        }
        for failure in workerFailures { text += "\n  FAILED           \(failure)" }
        return text
    }

    /// The run's figures as one JSON object. The bill fields are those of earlier single-process
    /// runs (percentiles are bucket upper bounds, in ms); the rest adds the run-wide figures.
    func json(elapsed: Duration) -> String {
        func num(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "null" }
        let s = counters
        let l = s.billAckLatency
        let g = s.loginLatency
        let failures = workerFailures.map { TailCommand.jsonString($0) }.joined(separator: ",")
        return "{\"elapsedSeconds\":\(num(SimulateCommand.secondsOf(elapsed))),\"workers\":\(workers),"
            + "\"workersReported\":\(reports),\"piles\":\(piles),\"loggedIn\":\(s.loggedIn),\"connected\":\(s.connected),"
            + "\"timeToAllLoggedInSeconds\":\(num(timeToAllLoggedIn)),\"heartbeatsSent\":\(s.heartbeatsSent),"
            + "\"heartbeatsAcked\":\(s.heartbeatsAcked),\"loginLatencyP50Ms\":\(num(g.percentileMs(0.5))),"
            + "\"loginLatencyP99Ms\":\(num(g.percentileMs(0.99))),\"billsQueued\":\(s.billsQueued),"
            + "\"billFramesSent\":\(s.billFramesSent),\"billsAcked\":\(s.billsAcked),\"billsAbandoned\":\(s.billsAbandoned),"
            + "\"billsPending\":\(s.billsPending),\"billsAckedInLoad\":\(billsAckedInLoad),"
            + "\"billsAckedPerSecond\":\(num(billsAckedPerSecond)),\"ackLatencyCount\":\(l.count),"
            + "\"ackLatencyMeanMs\":\(num(l.meanMs)),\"ackLatencyP50Ms\":\(num(l.percentileMs(0.5))),"
            + "\"ackLatencyP90Ms\":\(num(l.percentileMs(0.9))),\"ackLatencyP99Ms\":\(num(l.percentileMs(0.99))),"
            + "\"ackLatencyMaxMs\":\(num(l.maxMs)),\"reconnects\":\(s.reconnects),\"loginsAccepted\":\(s.loginsAccepted),"
            + "\"errors\":\(errors),\"connectFailures\":\(s.connectFailures),\"loginsRejected\":\(s.loginsRejected),"
            + "\"loginTimeouts\":\(s.loginTimeouts),\"heartbeatTimeouts\":\(s.heartbeatTimeouts),"
            + "\"parseErrors\":\(s.parseErrors),\"ackFileErrors\":\(ackFileErrors),\"workerFailures\":[\(failures)]}"
    }
}
