import Foundation
import PileGate
import Testing
import YKC

@testable import PileGateCLI

@Suite("pilegate stats: the screen and its figures")
struct StatsScreenTests {
    static func sample(_ json: String, at seconds: Double) throws -> StatsSample {
        StatsSample(json: try JSONValue.parse(json), fetchedAt: Date(timeIntervalSince1970: seconds))
    }

    @Test("rates are counter deltas over the gateway's uptime between two snapshots")
    func rates() throws {
        let before = try Self.sample(
            #"{"node":"n1","counters":{"uptimeSeconds":100,"online":2,"accepted":10,"loginsAccepted":4,"#
                + #""framesIn":{"heartbeat":100},"closed":{"kicked":1}}}"#, at: 1000)
        let now = try Self.sample(
            #"{"node":"n1","counters":{"uptimeSeconds":110,"online":3,"accepted":30,"loginsAccepted":9,"#
                + #""framesIn":{"heartbeat":150,"login":5},"closed":{"kicked":3}},"#
                + #""extensions":{"outbox":{"pending":{"billing":{"transaction_record":4}},"oldestPendingAgeSeconds":{"billing":75}}}}"#,
            at: 1003)
        let text = StatsScreen(current: now, previous: before).rendered
        #expect(text.hasPrefix("pilegate n1 · up 1m50s · "))
        #expect(text.contains("rates over 10 s"))
        #expect(text.contains("online 3 "))
        #expect(text.contains("accepts/s 2   logins/s 0.5 "))
        #expect(text.contains("kicked 0.2 (3)"))
        // A frame type first seen now counts from 0.
        #expect(text.contains("  heartbeat     5      0  150    0"))
        #expect(text.contains("  login       0.5      0    5    0"))
        #expect(text.contains("no backend hub on this gateway"))
        #expect(text.contains("depth 4   oldest 1m15s"))
    }

    @Test("one snapshot: counts, no rates; missing sections are said to be missing")
    func single() throws {
        let text = StatsScreen(current: try Self.sample(#"{"counters":{}}"#, at: 0)).rendered
        #expect(text.hasPrefix("pilegate ? · "))
        #expect(text.contains("rates need two snapshots"))
        #expect(text.contains("accepts/s -"))
        #expect(text.contains("FRAMES\n  none yet\n"))
        #expect(text.contains("OUTBOX\n  not reported by this gateway"))
        #expect(!text.contains("OFFLINE AUTHORIZATION"))
    }

    @Test("offline authorization: the mode, starts approved and refused by reason, the cache")
    func offlineAuthorization() throws {
        let text = StatsScreen(
            current: try Self.sample(
                #"{"counters":{},"extensions":{"offlineAuthorization":{"mode":"recentOrAllowList","#
                    + #""approved":{"recent":3,"allow_list":1},"refused":{"unknown":2,"off":0},"cachedDecisions":120,"issued":4}}}"#, at: 0)
        ).rendered
        #expect(text.contains("OFFLINE AUTHORIZATION"))
        #expect(text.contains("  mode recentOrAllowList   approved allow_list 1 recent 3   refused unknown 2   cached decisions 120   issued 4\n"))
    }

    @Test("delivery latency: p50/p99 over the interval when it saw deliveries, else since start")
    func deliveryLatency() throws {
        func sample(_ buckets: [Int], at: Double) throws -> StatsSample {
            let list = buckets.map(String.init).joined(separator: ",")
            return try Self.sample(
                #"{"counters":{"uptimeSeconds":\#(at)},"extensions":{"hub":{"lanes":{"":{"billing":{"routed":1,"latencyBuckets":[\#(list)]}}}}}}"#,
                at: at)
        }
        // Bounds 0.5 ms, 1 ms, 2 ms, …: ten deliveries in (1, 2] ms before, ten in (0.5, 1] ms since.
        let before = try sample([0, 0, 10], at: 10)
        let now = try sample([0, 10, 10], at: 20)
        let interval = StatsScreen(current: now, previous: before).rendered
        #expect(interval.contains("750 µs  995 µs"), "\(interval)")
        let sinceStart = StatsScreen(current: now).rendered
        #expect(sinceStart.contains("1 ms  2 ms"), "\(sinceStart)")
    }

    @Test("outbox figures: depth and oldest age in either shape")
    func outboxFigures() throws {
        let flat = OutboxFigures.of(try JSONValue.parse(#"{"depth":7,"oldestAgeSeconds":12.5}"#))
        #expect(flat.depth == 7 && flat.oldest == 12.5)
        let nested = OutboxFigures.of(
            try JSONValue.parse(#"{"pending":{"a":{"x":2,"y":3},"b":{"x":1}},"oldestPendingAgeSeconds":{"a":9,"b":30}}"#))
        #expect(nested.depth == 6 && nested.oldest == 30)
        let none = OutboxFigures.of(try JSONValue.parse("{}"))
        #expect(none.depth == nil && none.oldest == nil)
    }
}

@Suite("pilegate stats: the cluster section")
struct StatsScreenClusterTests {
    @Test("cluster mode: NATS state, members with their piles, the pile directory and takeovers; absent otherwise")
    func cluster() throws {
        let json = #"{"node":"gw-1","counters":{},"extensions":{"cluster":{"node":"gw-1","name":"prod","nats":"connected","natsReconnects":2,"#
            + #""nodes":[{"node":"gw-1","piles":18211,"api":"10.0.0.11:8780","lastSeenSeconds":0.4},{"node":"gw-2","piles":17930,"api":"10.0.0.12:8780","lastSeenSeconds":1.1}],"#
            + #""directory":{"entries":36141,"owned":18211,"queued":0,"writeFailures":0,"cleaned":3,"following":"changes","loads":2,"gaps":1,"batchesPublished":40,"batchesReceived":77},"takeovers":{"asked":1,"closed":2,"unanswered":0,"unacknowledged":1}}}}"#
        let text = StatsScreen(current: try StatsScreenTests.sample(json, at: 0)).rendered
        #expect(text.contains("CLUSTER  prod · node gw-1\n  nats connected   reconnects 2\n"), "\(text)")
        #expect(text.contains("gw-2"))
        #expect(text.contains("17930"))
        #expect(text.contains("10.0.0.12:8780"))
        #expect(text.contains("directory 36141 piles   this node's 18211   queued 0   write failures 0   cleaned 3"))
        #expect(text.contains("directory follows changes   loads 2   gaps 1   batches out 40   in 77"))
        #expect(text.contains("takeovers asked 1   closed here 2   unanswered 0   offline unacknowledged 1"))
        let alone = StatsScreen(current: try StatsScreenTests.sample(#"{"counters":{}}"#, at: 0)).rendered
        #expect(!alone.contains("CLUSTER"))
    }
}
