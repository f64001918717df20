import Foundation
import NIOCore
@testable import PileGate
import PileSim
import Testing
import YKC

/// Offline authorization in cluster mode (issues 11.4, 13.1), two nodes on a real nats-server:
/// a backend's decision made through node A is known to node B during an outage, and the bill of
/// a session A authorized offline is marked whichever node it arrives through.
@Suite("Cluster mode: offline authorization decisions and issued serials are shared", .serialized)
struct ClusterOfflineAuthorizationTests {
    static let card = BinaryID(raw: 0xD14B_0A54)
    static let cardAllowed = BinaryID(raw: 0xAABB_CCDD)

    static func policy(_ c: inout GatewayConfiguration) {
        c.offlineAuthorization = .recentOrAllowList
        c.offlineAuthorizationMaxAmount = 50
        c.offlineAuthorizationWindow = 3600
        c.offlineAuthorizationAllowList = [Self.cardAllowed.description]
    }

    /// `/v1/stats` → `extensions.offlineAuthorization.<field>` on `node`.
    static func offlineStat(_ field: String, on node: AssembledGateway) async -> Int? {
        let stats = try? await node.http("GET", "/v1/stats").json
        return ((stats?["extensions"] as? [String: Any])?["offlineAuthorization"] as? [String: Any])?[field] as? Int
    }

    @Test("a card a backend approved through node A starts offline on node B, with A's balance cap and logical card number")
    func decisionShared() async throws {
        try await ClusterFixture.with { cluster in
            let a = try await cluster.startNode("n1", Self.policy)
            let b = try await cluster.startNode("n2", Self.policy)
            #expect(await a.eventually { await a.clusterMembers().count == 2 })
            let billing = try await TestBackend.connect(apiPort: a.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["start_request"])
            let onA = try await cluster.pile("55010600000810", on: a)
            async let online = onA.requestCardStart(gun: 1, card: Self.card, timeout: .seconds(5))
            let request = try await billing.waitForEvent("start_request")
            let id = try #require(request["id"] as? String)
            let serial = "55010600000810" + "01" + "241130235900" + "0001"
            billing.send(
                #"{"type":"reply","id":"\#(id)","data":{"tradeSerial":"\#(serial)","logicalCardNumber":"0000001000000573","balance":20,"authResult":"succeeded","failureReason":"none"}}"#
            )
            #expect(try await online.authResult == .succeeded)
            // Node B learns the decision from the cluster's bucket (it never saw the card).
            #expect(await b.eventually { await Self.offlineStat("cachedDecisions", on: b) == 1 })
            // Outage: the backend goes away; the same card starts at a pile of node B.
            await billing.close()
            await onA.stop()
            try await Task.sleep(nanoseconds: 300_000_000)
            let onB = try await cluster.pile("55010600000811", on: b)
            let reply = try await onB.requestCardStart(gun: 1, card: Self.card, timeout: .seconds(5))
            #expect(reply.authResult == .succeeded)
            // The cap is the balance the backend gave through A (20.00 < the configured 50.00).
            #expect(reply.balance == YKCDecimal(units: 2000, scale: 2))
            #expect(reply.logicalCardNumber.description == "0000001000000573")
            // An unknown card is still refused on B.
            let unknown = try await onB.requestCardStart(gun: 2, card: BinaryID(raw: 0x1234_5678), timeout: .seconds(5))
            #expect(unknown.authResult == .failed)
            await onB.stop()
        }
    }

    @Test("an offline session authorized on node A whose bill arrives through node B is marked offlineAuthorization")
    func serialShared() async throws {
        try await ClusterFixture.with { cluster in
            let a = try await cluster.startNode("n1", Self.policy)
            let b = try await cluster.startNode("n2", Self.policy)
            #expect(await a.eventually { await a.clusterMembers().count == 2 })
            // No backend anywhere: A approves the allow-listed card itself and issues a serial.
            let onA = try await cluster.pile("55010600000812", on: a)
            let offline = try await onA.requestCardStart(gun: 1, card: Self.cardAllowed, timeout: .seconds(5))
            #expect(offline.authResult == .succeeded)
            #expect(await b.eventually { await Self.offlineStat("issued", on: b) == 1 })
            await onA.stop()
            // The pile comes back through node B and sends the session's bill there.
            let billing = try await TestBackend.connect(apiPort: b.apiPort)
            try await billing.subscribe(service: "billing", instance: "b1", events: ["transaction_record"])
            let onB = try await cluster.pile("55010600000812", on: b)
            try await onB.uploadBill(gun: 1, tradeSerial: offline.tradeSerial)
            try await onB.waitForBillAck(offline.tradeSerial)
            let bill = try await billing.waitForEvent("transaction_record", timeout: 10) {
                ($0["data"] as? [String: Any])?["tradeSerial"] as? String == offline.tradeSerial.description
            }
            let mark = try #require(bill["offlineAuthorization"] as? [String: Any])
            #expect(mark["reason"] as? String == "allow_list")
            #expect(mark["cap"] as? Double == 50)
            #expect((mark["eventId"] as? String)?.isEmpty == false)
            await billing.close()
            await onB.stop()
        }
    }
}
