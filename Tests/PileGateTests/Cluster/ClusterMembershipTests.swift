import PileGate
import Testing

@Suite("Cluster membership: nodes join, leave and die by their heartbeats")
struct ClusterMembershipTests {
    func beat(_ node: String, startedAt: Double = 100, leaving: Bool = false) -> ClusterHeartbeat {
        ClusterHeartbeat(node: node, piles: 3, api: "10.0.0.1:8780", startedAt: startedAt, leaving: leaving)
    }

    @Test("a first heartbeat joins, later ones only refresh")
    func joinOnce() {
        var m = ClusterMembership(timeout: 10)
        #expect(m.record(beat("a"), at: 0) == .joined("a"))
        #expect(m.record(beat("a"), at: 2) == nil)
        #expect(m.isAlive("a"))
        #expect(m.members["a"]?.lastSeen == 2)
    }

    @Test("silence longer than the timeout is a death, reported once")
    func deathOnce() {
        var m = ClusterMembership(timeout: 10)
        _ = m.record(beat("a"), at: 0)
        _ = m.record(beat("b"), at: 5)
        #expect(m.expire(at: 10).isEmpty)
        #expect(m.expire(at: 10.5) == [.died("a")])
        #expect(m.expire(at: 11).isEmpty)
        #expect(!m.isAlive("a") && m.isAlive("b"))
    }

    @Test("a leaving heartbeat removes the node at once; a stranger's is ignored")
    func leaving() {
        var m = ClusterMembership(timeout: 10)
        _ = m.record(beat("a"), at: 0)
        #expect(m.record(beat("a", leaving: true), at: 1) == .left("a"))
        #expect(!m.isAlive("a"))
        #expect(m.record(beat("z", leaving: true), at: 1) == nil)
    }

    @Test("the same id with a new start time is a restart")
    func restart() {
        var m = ClusterMembership(timeout: 10)
        _ = m.record(beat("a", startedAt: 100), at: 0)
        #expect(m.record(beat("a", startedAt: 200), at: 1) == .restarted("a"))
        #expect(m.record(beat("a", startedAt: 200), at: 2) == nil)
    }
}
