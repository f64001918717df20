import ArgumentParser
import Foundation
import PileSim
import Testing

@testable import PileGateCLI

/// `pilegate simulate --workers N --gateway a,b,…`: how the run is split, how workers are started,
/// and how their reports add up. (The run itself, with real processes and gateways, is in
/// Tests/PileGateTests/CLI/SimulateCLITests.swift.)
@Suite("pilegate simulate: worker split, worker arguments, totals")
struct SimulateWorkersTests {
    @Test("shares cover the run once, in order, differing by at most one pile", arguments: [
        (0, 1), (1, 1), (5, 2), (96_000, 6), (96_001, 6), (300_000, 16), (7, 3), (2, 5),
    ])
    func shares(_ piles: Int, _ workers: Int) {
        let shares = (0..<workers).map { PileShare.of(piles: piles, workers: workers, index: $0) }
        var next = 0
        for s in shares {
            #expect(s.offset == next)
            next += s.count
        }
        #expect(next == piles)
        let counts = shares.map(\.count)
        #expect((counts.max() ?? 0) - (counts.min() ?? 0) <= 1)
        #expect(PileShare.largest(piles: piles, workers: workers) == counts.max())
    }

    @Test("a worker's part of a run-wide rate follows its share")
    func part() {
        let s = PileShare.of(piles: 96_000, workers: 6, index: 2)
        #expect(s.count == 16_000 && s.offset == 32_000)
        #expect(s.part(of: 6_000, piles: 96_000) == 1_000)
        #expect(s.part(of: 6_000, piles: 0) == 0)
    }

    @Test("workers get this process's simulate arguments plus their index")
    func workerArguments() throws {
        let args = ["/x/pilegate", "simulate", "--piles", "10", "--workers", "2", "--worker-index", "1", "--worker-index=0"]
        #expect(
            try SimulateWorkerPool.workerArguments(args, index: 1)
                == ["simulate", "--piles", "10", "--workers", "2", "--worker-index", "1"])
        #expect(throws: SimulateWorkerError.self) { try SimulateWorkerPool.workerArguments(["pilegate", "serve"], index: 0) }
        // What a worker gets parses as the same run.
        let worker = try SimulateCommand.parse(Array(try SimulateWorkerPool.workerArguments(args, index: 1).dropFirst()))
        #expect(worker.workerIndex == 1 && worker.workers == 2 && worker.piles == 10)
    }

    @Test("bad --gateway lists, assignments and splits are refused", arguments: [
        ["--gateway", "127.0.0.1:1,"], ["--gateway", "a:1,b"], ["--gateway", "127.0.0.1:0"], ["--gateway-assignment", "random"],
        ["--workers", "0"], ["--workers", "65"], ["--workers", "2", "--worker-index", "2"], ["--charging", "1.5"],
        ["--charging", "nan"], ["--charging-session", "0"], ["--bills-after", "-1"],
        ["--piles", "10000000", "--first-id", "10000000000001"], ["--misbehave", "garbage", "--workers", "2"],
    ])
    func refused(_ args: [String]) {
        #expect(throws: (any Error).self) { _ = try SimulateCommand.parse(args) }
    }

    @Test("a gateway list parses; enough workers make a large run fit the file limit")
    func accepted() throws {
        let gateways = try SimulateCommand.parseGateways("127.0.0.1:18001, [::1]:18002,:18003")
        #expect(gateways.map(\.host) == ["127.0.0.1", "::1", "127.0.0.1"])
        #expect(gateways.map(\.port) == [18001, 18002, 18003])
        let perProcess = SimulateCommand.openFileLimit() - SimulateCommand.filesKeptFree
        let piles = perProcess * 3
        let command = try SimulateCommand.parse(["--piles", String(piles), "--workers", "3", "--first-id", "10000000000001"])
        #expect(command.workers == 3)
    }

    static func report(
        worker: Int, piles: Int, loggedIn: Int, allInAt: Double?, billsFrom: Double? = nil, before: Int = 0, acked: Int = 0,
        lastAck: Double? = nil, latenciesMs: [Int] = []
    ) -> SimulateReport {
        let c = SimulatorCounters()
        c.loggedIn.store(loggedIn, ordering: .relaxed)
        c.loginsAccepted.store(loggedIn, ordering: .relaxed)
        c.heartbeatsSent.store(loggedIn * 2, ordering: .relaxed)
        c.billsAcked.store(acked, ordering: .relaxed)
        c.billsQueued.store(acked, ordering: .relaxed)
        c.connectFailures.store(worker, ordering: .relaxed)
        for ms in latenciesMs { c.billAckLatency.record(.milliseconds(Int64(ms))) }
        var r = SimulateReport(kind: .summary, worker: worker, piles: piles, startedAt: 1000.5, counters: c.snapshot())
        r.allLoggedInAt = allInAt
        r.billsStartedAt = billsFrom
        r.billsAckedBeforeLoad = before
        r.lastBillAckAt = lastAck
        r.phases = ["loggedIn": loggedIn]
        return r
    }

    @Test("totals add the workers up: counters summed, the slowest login, bills per second over the load")
    func totals() throws {
        let reports = [
            Self.report(worker: 0, piles: 3, loggedIn: 3, allInAt: 1012, billsFrom: 1020, before: 2, acked: 102, lastAck: 1030, latenciesMs: Array(repeating: 1, count: 98)),
            Self.report(worker: 1, piles: 2, loggedIn: 2, allInAt: 1015, billsFrom: 1021, before: 0, acked: 100, lastAck: 1040, latenciesMs: [40, 40]),
        ]
        // Through the JSON line a worker prints, as the parent reads it.
        let parsed = try reports.map { try #require(SimulateReport.parse(Substring($0.line()))) }
        #expect(parsed == reports)
        let t = try SimulateTotals(reports: parsed, workers: 2, piles: 5, runStartedAt: 1000)
        #expect(t.counters.loggedIn == 5 && t.counters.heartbeatsSent == 10 && t.counters.billsAcked == 202)
        #expect(t.timeToAllLoggedIn == 15)
        #expect(t.billsAckedInLoad == 200)
        #expect(t.billsAckedPerSecond == 10)  // 200 bills from 1020 to 1040
        #expect(t.errors == 1)
        #expect(t.phases == ["loggedIn": 5])
        // p99 of the 100 merged samples is worker 1's 40 ms, which an average of the p99s would hide.
        #expect(t.counters.billAckLatency.percentileMs(0.99) == 40)
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(t.json(elapsed: .seconds(60)).utf8)) as? [String: Any])
        #expect(json["loggedIn"] as? Int == 5 && json["workers"] as? Int == 2)
        #expect(json["timeToAllLoggedInSeconds"] as? Double == 15)
        #expect(json["billsAckedPerSecond"] as? Double == 10)
        #expect(json["ackLatencyP99Ms"] as? Double == 40)
        #expect(t.summary(elapsed: .seconds(60)).contains("all logged in    15.00 s after the start"))
    }

    @Test("no login time while a worker is short of piles or missing")
    func incomplete() throws {
        let short = [Self.report(worker: 0, piles: 3, loggedIn: 3, allInAt: 1012), Self.report(worker: 1, piles: 2, loggedIn: 1, allInAt: nil)]
        #expect(try SimulateTotals(reports: short, workers: 2, piles: 5, runStartedAt: 1000).timeToAllLoggedIn == nil)
        let missing = [Self.report(worker: 0, piles: 3, loggedIn: 3, allInAt: 1012)]
        let t = try SimulateTotals(reports: missing, workers: 2, piles: 5, runStartedAt: 1000, workerFailures: ["worker 1 ended without a summary"])
        #expect(t.timeToAllLoggedIn == nil && t.billsAckedPerSecond == nil)
        #expect(t.summary(elapsed: .seconds(1)).contains("FAILED           worker 1 ended without a summary"))
    }

    @Test("other output lines are not reports")
    func notReports() {
        #expect(SimulateReport.parse("simulate: 10 piles") == nil)
        #expect(SimulateReport.parse("{\"tail\":\"summary\"}") == nil)
        #expect(SimulateReport.parse("") == nil)
    }
}
