@testable import PileGate
import Testing

@Suite("Cluster backend directory: other nodes' instances from their advertisements")
struct ClusterBackendDirectoryTests {
    static func instance(_ key: String, service: String = "billing", lane: String = "", state: String = "healthy") -> ClusterBackendAdvert.Instance {
        ClusterBackendAdvert.Instance(
            key: key, service: service, instance: "i-" + key, lane: lane, events: ["heartbeat"], maxInFlight: 8, durable: true, state: state,
            joinedSecondsAgo: 1)
    }

    @Test("an advertisement is the whole truth about its node: added, updated, removed, each once")
    func diff() {
        var d = ClusterBackendDirectory()
        let first = d.apply(ClusterBackendAdvert(node: "b", instances: [Self.instance("b-1"), Self.instance("b-2")]))
        #expect(first.added.map(\.key) == ["b-1", "b-2"])
        #expect(first.removed.isEmpty && first.updated.isEmpty)
        // The same advertisement again (the periodic one) changes nothing, though time passed.
        var again = Self.instance("b-1")
        again.joinedSecondsAgo = 5
        #expect(d.apply(ClusterBackendAdvert(node: "b", instances: [again, Self.instance("b-2")])).isEmpty)
        // b-1 drains, b-2 leaves, b-3 joins.
        let next = d.apply(ClusterBackendAdvert(node: "b", instances: [Self.instance("b-1", state: "draining"), Self.instance("b-3")]))
        #expect(next.updated.map(\.key) == ["b-1"])
        #expect(next.added.map(\.key) == ["b-3"])
        #expect(next.removed == ["b-2"])
        // Another node's advertisement leaves b's alone.
        #expect(d.apply(ClusterBackendAdvert(node: "c", instances: [Self.instance("c-1")])).added.map(\.key) == ["c-1"])
        #expect(d.count == 3)
        // A subscription that changed under one key is replaced, not patched.
        let moved = d.apply(ClusterBackendAdvert(node: "c", instances: [Self.instance("c-1", lane: "gray")]))
        #expect(moved.removed == ["c-1"] && moved.added.map(\.lane) == ["gray"])
        #expect(d.drop(node: "b") == ["b-1", "b-3"])
        #expect(d.drop(node: "b").isEmpty)
        #expect(d.dropAll() == ["c-1"])
        #expect(d.count == 0)
    }

    @Test("invalid entries are skipped, and removed if they were known")
    func invalid() {
        var d = ClusterBackendDirectory()
        _ = d.apply(ClusterBackendAdvert(node: "b", instances: [Self.instance("b-1")]))
        var bad = Self.instance("b-1")
        bad.maxInFlight = 0
        var spaced = Self.instance("b 2")
        spaced.key = "b\r\n2"
        let changes = d.apply(ClusterBackendAdvert(node: "b", instances: [bad, spaced]))
        #expect(changes.removed == ["b-1"])
        #expect(changes.added.isEmpty)
        #expect(d.count == 0)
    }

    @Test("the origin node of an event id, with dashes in node ids")
    func origin() {
        #expect(ClusterEventRelay.originNode(ofEvent: "gw-1-8rus01-3") == "gw-1")
        #expect(ClusterEventRelay.originNode(ofEvent: "n1-abc-17") == "n1")
        #expect(ClusterEventRelay.originNode(ofEvent: "n1-17") == nil)
        #expect(ClusterEventRelay.originNode(ofEvent: "a.b-x-1") == nil)
    }
}
