import Foundation
import NIOCore
import PileGate
import PileSim
import Testing
import YKC

@Suite("Cluster mode: the billing-model cache is shared, so a pile that moves keeps charging through an outage", .serialized)
struct ClusterBillingModelsTests {
    static func pile(_ id: String, on node: AssembledGateway) async throws -> SimulatedPile {
        var c = SimulatedPileConfig.fast(pileID: PileID(id)!, gunCount: 1)
        c.reconnect = .never
        return try await SimulatedPile.connect(to: node.gateway.pilePort ?? 0, c)
    }

    @Test("a model a backend gave through node A answers the pile on node B while no backend is there")
    func sharedFallback() async throws {
        try await ClusterFixture.with(nodes: ["n1", "n2"]) { cluster in
            let (a, b) = (cluster.nodes[0], cluster.nodes[1])
            #expect(await a.eventually { await a.clusterMembers().count == 2 })
            let billing = try await TestBackend.connect(apiPort: a.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["billing_model_request"])
            let first = try await Self.pile("55010600000410", on: a)
            let request = try await billing.waitForEvent("billing_model_request")
            let id = request["id"] as? String ?? ""
            let periods = (0..<48).map { $0 < 16 ? "\"valley\"" : "\"flat\"" }.joined(separator: ",")
            billing.send(#"""
                {"type":"reply","id":"\#(id)","data":{"billingModel":"0007","sharpEnergyPrice":1.2,"sharpServiceFee":0.4,"peakEnergyPrice":1.0,"peakServiceFee":0.4,"flatEnergyPrice":0.8,"flatServiceFee":0.4,"valleyEnergyPrice":0.77,"valleyServiceFee":0.4,"lossRatio":0,"periods":[\#(periods)]}}
                """#)
            _ = try await first.waitUntil(timeout: .seconds(3), "model") { $0.billingModel != nil }
            await first.stop()
            await billing.close()
            // The pile comes back through node B, which never saw it and has no backend.
            try await Task.sleep(nanoseconds: 300_000_000)
            let moved = try await Self.pile("55010600000410", on: b)
            let state = try await moved.waitUntil(timeout: .seconds(5), "cached model on B") { $0.billingModel != nil }
            #expect(state.billingModel?.billingModel.description == "0007")
            #expect(state.billingModel?.valleyEnergyPrice == YKCDecimal("0.77"))
            await moved.stop()
        }
    }
}
