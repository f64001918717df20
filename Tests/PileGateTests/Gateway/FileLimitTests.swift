import Foundation
import NIOCore
import PileGate
import PileSim
import Testing
import YKC

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension ReliabilityTests {
    /// A gateway under a low file limit (`ulimit -n 256`) flooded with connections that never log
    /// in: the API keeps answering, the refusals are counted and logged, and piles get in again
    /// once the flood is gone.
    @Suite("File limit: a reserve for the API, pile connections refused above it")
    struct FileLimitTests {
        @Test("a flood of silent connections under ulimit -n 256: /healthz and /v1/stats answer, refusals are counted and logged")
        func floodUnderLowFileLimit() async throws {
            let serve = try ServeProcess.start(["loginTimeout": "60", "hubWarmupWindow": "0"], fileLimit: 256)
            defer { serve.cleanUp() }
            let (pilePort, apiPort) = try await serve.waitUntilStarted()
            #expect(serve.stderr.contains("pile connections capped by the file limit"), "\(serve.stderr)")
            var flood: [RawClient] = []
            for _ in 0..<300 {
                if let c = try? await RawClient.connect(port: pilePort) { flood.append(c) }
            }
            // The API answers at once, though the pile port is full.
            let started = Date()
            let health = try await Self.get(apiPort, "/healthz")
            #expect(health.status == 200)
            #expect(Date().timeIntervalSince(started) < 2)
            let stats = try await Self.get(apiPort, "/v1/stats")
            #expect(stats.status == 200)
            let refused = ((stats.json?["counters"] as? [String: Any])?["refused"] as? [String: Any])?["file_limit"] as? Int ?? 0
            #expect(refused > 0, "\(stats.body)")
            let metrics = try await Self.get(apiPort, "/metrics")
            #expect(metrics.body.contains(#"pilegate_connections_refused_total{reason="file_limit"}"#))
            #expect(serve.stderr.contains("pile connections refused: file descriptors are running out"), "\(serve.stderr)")
            // Refused connections were closed by the gateway; the admitted ones wait for a login.
            let closedByGateway = flood.filter(\.isClosed).count
            #expect(closedByGateway > 0)
            for c in flood { await c.close() }
            // With the flood gone, a real pile logs in.
            var config = SimulatedPileConfig.fast(pileID: PileID("66010600000300")!, gunCount: 1)
            config.reconnect = .never
            config.requestBillingModel = false
            var loggedIn = false
            let deadline = Date().addingTimeInterval(10)
            while !loggedIn && Date() < deadline {
                if let pile = try? await SimulatedPile.connect(to: pilePort, config) {
                    loggedIn = (try? await pile.waitForLogin()) != nil
                    await pile.stop()
                }
                if !loggedIn { try await Task.sleep(nanoseconds: 200_000_000) }
            }
            #expect(loggedIn)
            serve.signal(SIGTERM)
            _ = await serve.waitForExit(timeout: 15)
        }

        struct Answer {
            var status: Int
            var body: String
            var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] }
        }

        static func get(_ port: Int, _ path: String) async throws -> Answer {
            let request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!, timeoutInterval: 5)
            let (data, response) = try await URLSession.shared.data(for: request)
            return Answer(status: (response as? HTTPURLResponse)?.statusCode ?? 0, body: String(decoding: data, as: UTF8.self))
        }
    }
}
