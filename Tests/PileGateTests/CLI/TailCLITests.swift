import Foundation
import PileGate
import PileSim
import Testing
import YKC

/// `pilegate tail` (the built binary) as a backend of a real gateway: it subscribes over the
/// WebSocket, acks every event by its id (read by its JSON scanner), prints the events and reports
/// their latency from `receivedAt`.
@Suite("pilegate tail against a gateway")
struct TailCLITests {
    @Test("tail subscribes, prints each event, acks it by id and measures its latency")
    func printsAndAcks() async throws {
        try await AssembledGateway.with(AssembledGateway.config()) { gw in
            let run = Task {
                try await CLI.run([
                    "tail", "--api", gw.api, "--service", "tailtest", "--events", "pile_online,heartbeat", "--print",
                    "--duration", "2.5",
                ])
            }
            // Subscribed: the hub lists the instance.
            let subscribed = await gw.eventually {
                ((try? await gw.http("GET", "/v1/stats").body) ?? "").contains(#""tailtest""#)
            }
            #expect(subscribed)
            var config = SimulatedPileConfig.fast(pileID: PileID("66010600000901") ?? PileID(raw: 0), gunCount: 1)
            config.reconnect = .never
            config.requestBillingModel = false
            let pile = try await SimulatedPile.connect(to: gw.gateway.pilePort ?? 0, config)
            try await pile.waitForLogin()
            _ = try await pile.waitUntil(timeout: .seconds(3), "two acked heartbeats") { $0.guns.first?.heartbeatsAcked ?? 0 >= 2 }
            let tail = try await run.value
            await pile.stop()
            #expect(tail.status == 0, "\(tail.stderr)")

            let events = tail.lines.compactMap { try? JSONValue.parse($0) }.filter { $0["type"]?.stringValue == "event" }
            let names = Set(events.compactMap { $0["event"]?.stringValue })
            #expect(names == ["pile_online", "heartbeat"], "\(tail.stdout)")
            #expect(events.allSatisfy { $0["pile"]?.stringValue == "66010600000901" })

            let summaryLine = try #require(tail.stderr.split(separator: "\n").first { $0.contains(#""tail":"summary""#) })
            let summary = try JSONValue.parse(String(summaryLine))
            #expect(summary["subscribed"] == .bool(true))
            #expect(summary["events"]?.intValue == events.count)
            #expect(summary["unparsedReceivedAt"]?.intValue == 0, "every receivedAt was read")
            #expect(summary["latencyMs"]?["p50"]?.doubleValue != nil)

            // Every event was acked: nothing is left in flight at the gateway for the service.
            let stats = try await gw.http("GET", "/v1/stats").body
            let lanes = try JSONValue.parse(stats)["extensions"]?["hub"]?["lanes"]
            #expect(lanes?[""]?["tailtest"]?["acks"]?.intValue == events.count, "\(stats)")
        }
    }
}
