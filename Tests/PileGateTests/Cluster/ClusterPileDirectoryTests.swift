import Foundation
import Testing
import YKC

@testable import PileGate

/// The pile directory's writer batching, without NATS.
@Suite("Cluster pile directory: the writer's batches")
struct ClusterPileDirectoryTests {
    static func info(_ pile: String, connection: UInt64) -> PileSessionInfo {
        let id = PileID(pile) ?? PileID(raw: 0)
        let held = ClusterPileDirectory.Held(
            pile: id, entry: ClusterPileEntry(node: "n", incarnation: 1, since: 0, address: "127.0.0.1:1", lane: "", connection: connection),
            revision: 1)
        return ClusterPileDirectory.sessionInfo(held)
    }

    @Test("one pile's operations stay in order; a login and its own logout in one batch cancel out; another connection's do not")
    func batches() {
        let a1 = Self.info("55010600000001", connection: 1)
        let a2 = Self.info("55010600000001", connection: 2)
        let b = Self.info("55010600000002", connection: 3)
        let work = ClusterPileDirectory.byPile([
            .online(a1), .online(b), .offline(a1.pileId, connection: 1), .online(a2), .offline(b.pileId, connection: 9),
        ])
        #expect(work.map(\.0) == [a2.pileId, b.pileId])
        let first = work[0].1
        #expect(first.count == 1)
        if case .online(let info) = first.first { #expect(info.connectionId == 2) } else { Issue.record("\(first)") }
        // b: its login, then a logout of another connection (kept: the writer checks ownership).
        #expect(work[1].1.count == 2)
        // A login and its logout alone: nothing to write.
        #expect(ClusterPileDirectory.byPile([.online(a1), .offline(a1.pileId, connection: 1)]).isEmpty)
        // A reconnect (the old connection's logout, the new one's login): the new put alone.
        let reconnect = ClusterPileDirectory.byPile([.offline(a1.pileId, connection: 1), .online(a2)])
        #expect(reconnect.count == 1 && reconnect[0].1.count == 1)
        if case .online(let info) = reconnect.first?.1.first { #expect(info.connectionId == 2) } else { Issue.record("\(reconnect)") }
    }

    @Test("a lost node's pile_offline carries what the entry holds")
    func lostSession() {
        let info = Self.info("55010600000003", connection: 42)
        #expect(info.connectionId == 42)
        #expect(info.remoteAddress == "127.0.0.1:1")
        #expect(info.remoteHost == "127.0.0.1")
        #expect(info.login.pileId == info.pileId)
    }
}
