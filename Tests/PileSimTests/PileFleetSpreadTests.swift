import Foundation
import NIOCore
import NIOPosix
import PileSim
import Testing
import YKC

/// A fleet over several gateways, charging piles, and adding up the counters of several fleets
/// (what `pilegate simulate --workers N --gateway a,b,…` is built on).
@Suite("PileFleet over several gateways; charging cycles; merged counters")
struct PileFleetSpreadTests {
    @Test("round-robin gives gateway k mod n to the k-th pile of the run, whatever the share")
    func roundRobin() {
        let a = GatewayAssignment.roundRobin
        #expect((0..<6).map { a.gatewayIndex(runIndex: $0, pileID: 99, count: 3) } == [0, 1, 2, 0, 1, 2])
        #expect(a.gatewayIndex(runIndex: 7, pileID: 0, count: 1) == 0)
    }

    @Test("hash depends only on the pile id and spreads ids over the gateways")
    func hash() {
        let a = GatewayAssignment.hash
        let first: UInt64 = 32_010_600_000_001
        let picks = (0..<6000).map { a.gatewayIndex(runIndex: $0, pileID: first + UInt64($0), count: 6) }
        #expect(picks.allSatisfy { (0..<6).contains($0) })
        let counts = Dictionary(grouping: picks, by: { $0 }).mapValues(\.count)
        #expect(counts.count == 6)
        #expect(counts.values.allSatisfy { $0 > 800 && $0 < 1200 }, "\(counts)")
        // Same id, other run index: same gateway.
        #expect(a.gatewayIndex(runIndex: 0, pileID: first + 5, count: 6) == picks[5])
        // FNV-1a-64 of the 14 ASCII digits.
        #expect(GatewayAssignment.fnv1a(1) == Self.referenceFNV("00000000000001"))
        #expect(GatewayAssignment.fnv1a(first) == Self.referenceFNV("32010600000001"))
    }

    static func referenceFNV(_ text: String) -> UInt64 {
        text.utf8.reduce(0xcbf2_9ce4_8422_2325 as UInt64) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
    }

    @Test("exactly ⌊n·f⌋ of the first n piles charge, spread evenly", arguments: [0.0, 0.2, 0.25, 0.5, 1.0, 0.333])
    func chargingSelection(_ fraction: Double) {
        for n in [1, 5, 10, 96, 1000] {
            let charging = (0..<n).filter { ChargingCycle.isCharging(runIndex: $0, fraction: fraction) }.count
            #expect(charging == Int((Double(n) * fraction).rounded(.down)), "n=\(n)")
        }
        if fraction == 0.2 {
            #expect((0..<10).filter { ChargingCycle.isCharging(runIndex: $0, fraction: 0.2) } == [4, 9])
        }
    }

    @Test("a fleet spreads its piles over two gateways, round-robin from its run index")
    func twoGateways() async throws {
        let a = try await FakePlatform.start()
        let b = try await FakePlatform.start()
        var config = PileFleetConfig(
            targets: [
                try SocketAddress(ipAddress: "127.0.0.1", port: a.port), try SocketAddress(ipAddress: "127.0.0.1", port: b.port),
            ], pileCount: 7, gunCount: 1)
        config.firstPileID = 32_010_600_000_101
        config.runIndexOffset = 3  // a worker whose share starts at the run's 4th pile
        config.connectRate = nil
        config.template.heartbeatInterval = .milliseconds(200)
        let fleet = try PileFleet(config: config, group: MultiThreadedEventLoopGroup.singleton)
        await fleet.start()
        #expect(await a.eventually { fleet.counters.snapshot().loggedIn == 7 })
        func ids(_ p: FakePlatform) async -> Set<String> {
            Set(await p.frames(code: 0x01).compactMap { frame -> String? in
                if case .login(let m) = YKCMessage.decode(frame) { return m.pileId.description }
                return nil
            })
        }
        // Run indices 3…9: odd ones to gateway b (index 1), even ones to a.
        #expect(await ids(a) == ["32010600000102", "32010600000104", "32010600000106"])
        #expect(await ids(b) == ["32010600000101", "32010600000103", "32010600000105", "32010600000107"])
        await fleet.stop()
        await a.shutdown()
        await b.shutdown()
    }

    @Test("with failover, the piles of a gateway that goes away reconnect to the others, as behind a load balancer")
    func failover() async throws {
        let gateways = [try await FakePlatform.start(), try await FakePlatform.start(), try await FakePlatform.start()]
        var config = PileFleetConfig(
            targets: try gateways.map { try SocketAddress(ipAddress: "127.0.0.1", port: $0.port) }, pileCount: 6, gunCount: 1)
        config.firstPileID = 32_010_600_000_201
        config.connectRate = nil
        config.failover = true
        config.template.heartbeatInterval = .milliseconds(200)
        config.template.reconnect = ReconnectPolicy(
            enabled: true, initialDelay: .milliseconds(50), maxDelay: .milliseconds(200), multiplier: 2, jitter: 0)
        let fleet = try PileFleet(config: config, group: MultiThreadedEventLoopGroup.singleton)
        await fleet.start()
        #expect(await gateways[0].eventually { fleet.counters.snapshot().loggedIn == 6 })
        @Sendable func ids(_ p: FakePlatform) async -> Set<String> {
            Set(await p.frames(code: 0x01).compactMap { frame -> String? in
                if case .login(let m) = YKCMessage.decode(frame) { return m.pileId.description }
                return nil
            })
        }
        let first = await ids(gateways[0])
        #expect(first == ["32010600000201", "32010600000204"])
        // The first gateway goes away: its two piles log in on the other two.
        await gateways[0].shutdown()
        #expect(
            await gateways[1].eventually(timeout: .seconds(5)) {
                let elsewhere = await ids(gateways[1]).union(await ids(gateways[2]))
                return first.isSubset(of: elsewhere) && elsewhere.count == 6
            })
        await fleet.stop()
        await gateways[1].shutdown()
        await gateways[2].shutdown()
    }

    @Test("an empty gateway list is refused")
    func noGateway() throws {
        let config = PileFleetConfig(targets: [], pileCount: 1)
        #expect(throws: PileFleetError.self) { _ = try PileFleet(config: config, group: MultiThreadedEventLoopGroup.singleton) }
    }

    @Test("a charging pile charges by itself: charging 0x13s, a bill acked with 0x40, then the next session")
    func chargingCycle() async throws {
        let platform = try await FakePlatform.start()
        var config = PileFleetConfig(
            target: try SocketAddress(ipAddress: "127.0.0.1", port: platform.port), pileCount: 4, gunCount: 2)
        config.connectRate = nil
        config.chargingFraction = 0.5
        config.chargingCycle = ChargingCycle(sessionLength: .milliseconds(300), pause: .milliseconds(100))
        config.template.chargingRealtimeInterval = .milliseconds(100)
        config.template.realtimeOnLogin = false
        config.template.realtimeInterval = nil
        let fleet = try PileFleet(config: config, group: MultiThreadedEventLoopGroup.singleton)
        await fleet.start()
        #expect(await platform.eventually(timeout: .seconds(5)) { fleet.counters.snapshot().billsAcked >= 4 })
        let bills = await platform.frames(code: 0x3B).compactMap { frame -> TransactionRecord? in
            if case .transactionRecord(let m) = YKCMessage.decode(frame) { return m }
            return nil
        }
        // Run indices 1 and 3 charge (⌊(i+1)/2⌋ > ⌊i/2⌋), on gun 1, each session its own serial.
        #expect(Set(bills.map(\.pileId.description)) == ["32010600000002", "32010600000004"])
        #expect(bills.allSatisfy { $0.gun.number == 1 })
        #expect(Set(bills.map(\.tradeSerial)).count == bills.count)
        let charging = await platform.frames(code: 0x13).compactMap { frame -> RealtimeData? in
            if case .realtimeData(let m) = YKCMessage.decode(frame) { return m }
            return nil
        }.filter { $0.status == .charging }
        #expect(charging.count >= 4)
        #expect(fleet.counters.snapshot().billsAbandoned == 0)
        await fleet.stop()
        await platform.shutdown()
    }

    @Test("merged snapshots add counters and histogram buckets; percentiles are of all samples")
    func merge() throws {
        let a = SimulatorCounters()
        let b = SimulatorCounters()
        let both = SimulatorCounters()
        for ms in 1...90 {
            a.loginLatency.record(.milliseconds(Int64(ms)))
            both.loginLatency.record(.milliseconds(Int64(ms)))
        }
        for ms in [400, 450, 480, 490, 495, 600, 700, 800, 900, 1000] {
            b.loginLatency.record(.milliseconds(Int64(ms)))
            both.loginLatency.record(.milliseconds(Int64(ms)))
        }
        a.loggedIn.store(90, ordering: .relaxed)
        b.loggedIn.store(10, ordering: .relaxed)
        a.heartbeatsSent.store(5, ordering: .relaxed)
        b.heartbeatsSent.store(7, ordering: .relaxed)
        b.billAckLatency.record(.microseconds(1_100))
        var merged = a.snapshot()
        try merged.merge(b.snapshot())
        #expect(merged.loggedIn == 100 && merged.heartbeatsSent == 12)
        #expect(merged.loginLatency == both.loginLatency.snapshot())
        // p95 of all 100 samples is in b's range, which neither an average of the two p95s nor a's shows.
        #expect(merged.loginLatency.percentileMs(0.95) == 500)
        #expect(merged.loginLatency.maxMs == 1000)
        #expect(merged.billAckLatency.count == 1)
        #expect(try SimulatorCounters.Snapshot.sum([a.snapshot(), b.snapshot()]) == merged)
        #expect(try SimulatorCounters.Snapshot.sum([]) == .zero)

        var odd = a.snapshot()
        odd.loginLatency = LatencyHistogram(boundsMicros: [5, 10]).snapshot()
        #expect(throws: HistogramMismatch.self) { try odd.merge(b.snapshot()) }
    }

    @Test("a snapshot survives JSON both ways")
    func codable() throws {
        let c = SimulatorCounters()
        c.billsAcked.store(3, ordering: .relaxed)
        c.billAckLatency.record(.microseconds(2_500))
        let data = try JSONEncoder().encode(c.snapshot())
        #expect(try JSONDecoder().decode(SimulatorCounters.Snapshot.self, from: data) == c.snapshot())
    }
}
