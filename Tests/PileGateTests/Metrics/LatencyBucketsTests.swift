import Foundation
@testable import PileGate
import Testing

@Suite("LatencyBuckets: the one latency histogram")
struct LatencyBucketsTests {
    @Test("observations land in the first bucket whose bound holds them; above the last, in the overflow")
    func observe() {
        var h = LatencyBuckets(bounds: [0.001, 0.01, 0.1])
        for s in [0.0005, 0.001, 0.002, 0.01, 0.05, 3] { h.observe(s) }
        #expect(h.counts == [2, 2, 1, 1])
        #expect(h.count == 6)
        #expect(abs(h.sum - 3.0635) < 1e-9)
    }

    @Test("quantiles interpolate inside their bucket; the overflow reports the last bound; empty is nil")
    func quantiles() throws {
        let h = try #require(LatencyBuckets(bounds: [1, 2, 4], counts: [0, 10, 0, 0]))
        #expect(h.quantile(0.5) == 1.5)
        #expect(h.quantile(1) == 2)
        #expect(LatencyBuckets(bounds: [1, 2, 4], counts: [10])?.quantile(0.99) == 0.99)
        #expect(LatencyBuckets(bounds: [1, 2, 4], counts: [0, 0, 0, 3])?.quantile(0.5) == 4)
        #expect(LatencyBuckets(bounds: [1, 2, 4]).quantile(0.5) == nil)
    }

    @Test("exported counts: short lists are padded, too many or negative are refused")
    func exported() {
        #expect(LatencyBuckets(bounds: [1, 2], counts: [3])?.counts == [3, 0, 0])
        #expect(LatencyBuckets(bounds: [1, 2], counts: [1, 2, 3, 4]) == nil)
        #expect(LatencyBuckets(bounds: [1, 2], counts: [1, -1]) == nil)
    }

    @Test("since: what was observed after a snapshot; other bounds are not comparable")
    func since() throws {
        var h = LatencyBuckets(bounds: [1, 2])
        h.observe(0.5)
        let snapshot = h
        h.observe(1.5)
        h.observe(1.5)
        let delta = try #require(h.since(snapshot))
        #expect(delta.counts == [0, 2, 0] && delta.sum == 3)
        #expect(h.since(LatencyBuckets(bounds: [1])) == nil)
        // A restarted owner (counts lower than before): nothing is known of the interval.
        let restarted = try #require(LatencyBuckets(bounds: [1, 2], counts: [0, 1, 0]))
        #expect(restarted.since(h)?.counts == [0, 0, 0])
    }

    @Test("the hub's lane traffic counts into one and keeps its JSON shape (latencyCount, latencySumSeconds, latencyBuckets)")
    func laneTraffic() throws {
        var t = BackendLaneTraffic()
        t.count(fallback: false, overflow: false)
        t.acked(latency: 0.0007, failure: false)
        t.acked(latency: 20, failure: true)
        let data = try JSONEncoder().encode(t)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["latencyCount"] as? Int == 2)
        #expect(object["latencySumSeconds"] as? Double == 20.0007)
        #expect(object["latencyBuckets"] as? [Int] == [0, 1] + Array(repeating: 0, count: 12) + [1])
        #expect(object["acks"] as? Int == 2 && object["failures"] as? Int == 1 && object["routed"] as? Int == 1)
        let back = try JSONDecoder().decode(BackendLaneTraffic.self, from: data)
        #expect(back.latency == t.latency && back.acks == 2)
        #expect(t.latency.quantile(0.5) == 0.001)
    }
}
