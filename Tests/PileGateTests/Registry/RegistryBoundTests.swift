import Foundation
import PileGate
import PileSim
import Testing
import YKC

/// The bound on pile ids in the registry (`registryMaxPiles`), over real sockets: under the open
/// login policy simulated piles with new ids fill it, the next new id is rejected and counted,
/// known ids still log in, and removing one frees a place.
@Suite("Registry: the number of pile ids is bounded")
struct RegistryBoundTests {
    @Test("a full registry rejects a new pile id and counts it; known piles log in; DELETE frees a place")
    func fullRegistryRejectsNewIds() async throws {
        try await withGateway({ $0.registryMaxPiles = 2 }) { gw in
            for id in ["32010600019501", "32010600019502"] {
                let pile = try await gw.pile(id)
                #expect(try await pile.waitForLoginResult() == .accepted)
                await pile.stop()
            }
            let stranger = try await gw.pile("32010600019503")
            #expect(try await stranger.waitForLoginResult() == .rejected)
            await stranger.stop()
            #expect(gw.counters.refusedRegistryFull.load(ordering: .relaxed) == 1)
            #expect(gw.gateway.registry.knownCount == 2)
            let metrics = try await gw.http("GET", "/metrics").body
            #expect(metrics.contains(#"pilegate_logins_refused_total{reason="registry_full"} 1"#), "\(metrics.prefix(200))")
            // A pile the registry holds logs in as before.
            let known = try await gw.pile("32010600019501")
            #expect(try await known.waitForLoginResult() == .accepted)
            await known.stop()
            // Removing a pile frees its place for a new id (once its row is written: the registry
            // writes logins in batches).
            let written = try await gw.eventually { try await gw.gateway.registry.record(PileID("32010600019502")!) != nil }
            #expect(written)
            #expect(try await gw.http("DELETE", "/v1/piles/32010600019502").status == 200)
            let newcomer = try await gw.pile("32010600019503")
            #expect(try await newcomer.waitForLoginResult() == .accepted)
            await newcomer.stop()
            #expect(gw.counters.refusedRegistryFull.load(ordering: .relaxed) == 1)
        }
    }
}
