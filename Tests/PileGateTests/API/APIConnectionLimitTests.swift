import Foundation
@testable import PileGate
import Testing

/// The bound on open API connections (`apiMaxConnections`), over real sockets: with every place
/// taken the API accepts nothing more, and a waiting client is answered once a place frees.
@Suite("API: open connections are bounded")
struct APIConnectionLimitTests {
    @Test("with apiMaxConnections taken a new connection waits unanswered; when one closes it is accepted and answered; /metrics counts")
    func boundOverSockets() async throws {
        try await withGateway({ $0.apiMaxConnections = 3 }) { gw in
            let counts = gw.gateway.apiConnections
            var held: [RawClient] = []
            for _ in 0..<3 {
                held.append(try await RawClient.connect(port: gw.apiPort))
                let n = held.count
                let accepted = await gw.eventually { counts.open.load(ordering: .relaxed) == n }
                #expect(accepted)
            }
            let request = Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
            // The kernel completes the TCP handshake (listen backlog), but the API does not accept it.
            let waiting = try await RawClient.connect(port: gw.apiPort)
            try await waiting.send(request)
            try await Task.sleep(nanoseconds: 500_000_000)
            #expect(waiting.receivedBytes.isEmpty)
            #expect(counts.open.load(ordering: .relaxed) == 3)
            // A place frees: the waiting connection is accepted and its request answered.
            await held[0].close()
            let answered = await gw.eventually {
                ReliabilityTests.APIProtocolTests.responses(waiting.receivedBytes).first?.status == 200
            }
            #expect(answered, "\(String(decoding: waiting.receivedBytes, as: UTF8.self).debugDescription)")
            await waiting.close()
            let freed = await gw.eventually { counts.open.load(ordering: .relaxed) == 2 }
            #expect(freed)
            // The third place again, for /metrics.
            let scrape = try await RawClient.connect(port: gw.apiPort)
            try await scrape.send(Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            let scraped = await gw.eventually { ReliabilityTests.APIProtocolTests.responses(scrape.receivedBytes).count == 1 }
            #expect(scraped)
            let metrics = ReliabilityTests.APIProtocolTests.responses(scrape.receivedBytes).first?.body ?? ""
            #expect(metrics.contains("pilegate_api_connections 3"), "\(metrics.prefix(300))")
            // Reached at the third held connection, when the waiting one took the freed place, and now.
            #expect(metrics.contains("pilegate_api_connections_limit_reached_total 3"))
            await scrape.close()
            for c in held.dropFirst() { await c.close() }
            let allClosed = await gw.eventually { counts.open.load(ordering: .relaxed) == 0 }
            #expect(allClosed)
        }
    }
}
