import Foundation
import PileGate
import YKC
import Testing

/// `pilegate simulate --workers 2 --gateway a,b` (the built binary) against two real gateways: the
/// command starts two copies of itself, each with half of the piles spread over both gateways,
/// and adds their JSON reports up into one summary.
@Suite("pilegate simulate over worker processes and several gateways")
struct SimulateCLITests {
    @Test("2 workers x 2 gateways: every pile logs in once, half on each gateway; the summary adds the workers up")
    func workersAndGateways() async throws {
        let config = AssembledGateway.config { $0.nodeId = "sim-a" }
        try await AssembledGateway.with(config) { a in
            try await AssembledGateway.with(AssembledGateway.config { $0.nodeId = "sim-b" }) { b in
                let summaryPath = NSTemporaryDirectory() + "pilegate-sim-summary-\(UUID().uuidString).json"
                defer { try? FileManager.default.removeItem(atPath: summaryPath) }
                let gateways = "127.0.0.1:\(a.gateway.pilePort ?? 0),127.0.0.1:\(b.gateway.pilePort ?? 0)"
                let run = try await CLI.run([
                    "simulate", "--workers", "2", "--gateway", gateways, "--piles", "40", "--guns", "1",
                    "--first-id", "66010600001001", "--source-addresses", "2", "--rate", "0", "--heartbeat", "0.5",
                    "--duration", "4", "--report-interval", "1", "--charging", "0.25", "--charging-session", "1",
                    "--charging-pause", "0.2", "--charging-realtime", "0.5", "--threads", "1", "--expect-all-login",
                    "--summary-json", summaryPath,
                ])
                #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
                #expect(run.stdout.contains("simulate: all 40 piles logged in after"), "\(run.stdout)")
                #expect(run.stdout.contains("workers=2/2"), "progress lines add both workers up")
                #expect(run.stdout.contains("[worker 1] simulate: worker 1: 20 piles"), "\(run.stdout)")

                let summary = try JSONValue.parse(try String(contentsOfFile: summaryPath, encoding: .utf8))
                #expect(summary["workers"]?.intValue == 2 && summary["workersReported"]?.intValue == 2)
                #expect(summary["piles"]?.intValue == 40 && summary["loggedIn"]?.intValue == 40, "\(summary)")
                #expect(summary["loginsAccepted"]?.intValue == 40)
                #expect(summary["timeToAllLoggedInSeconds"]?.doubleValue != nil)
                #expect((summary["heartbeatsAcked"]?.intValue ?? 0) >= 40)
                #expect(summary["errors"]?.intValue == 0, "\(summary)")
                // 10 charging piles, 1 s sessions: their bills were acked (durably stored by the gateways).
                #expect((summary["billsAcked"]?.intValue ?? 0) >= 10, "\(summary)")
                #expect(summary["workerFailures"]?.arrayValue?.isEmpty == true)

                // Round-robin over the run: 20 piles on each gateway, each logged in once.
                let onA = a.gateway.counters.snapshot().loginsAccepted
                let onB = b.gateway.counters.snapshot().loginsAccepted
                #expect(onA == 20 && onB == 20, "a=\(onA) b=\(onB)")
            }
        }
    }

    @Test("a worker that cannot reach its gateway makes no pile log in: the run fails and says so")
    func failingRun() async throws {
        let run = try await CLI.run([
            "simulate", "--workers", "2", "--gateway", "127.0.0.1:1", "--piles", "4", "--duration", "1", "--rate", "0",
            "--source-addresses", "0", "--threads", "1", "--reconnect-min", "0.2", "--reconnect-max", "0.2",
        ])
        #expect(run.status == 1)
        #expect(run.stdout.contains("simulate: FAILED: no pile logged in"), "\(run.stdout)")
        #expect(run.stdout.contains("workers          2 started, 2 reported"), "\(run.stdout)")
    }
}
