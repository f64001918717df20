import NIOCore
import NIOPosix
import PileSim
import Testing

/// Scale check, off by default: `PILESIM_SCALE_PILES=10000 swift test --filter PileSimScale`
/// runs that many 2-gun piles against the fake platform and prints the process's memory, so the
/// per-pile cost can be read off (it includes the fake platform's side of each connection).
@Suite("PileSim scale check")
struct PileSimScale {
    static let piles = Int(ProcessInfoShim.environment("PILESIM_SCALE_PILES") ?? "") ?? 0

    @Test(.enabled(if: piles > 0))
    func manyPiles() async throws {
        let platform = try await FakePlatform.start()
        let before = ProcessInfoShim.residentKB()
        var config = PileFleetConfig(
            target: try SocketAddress(ipAddress: "127.0.0.1", port: platform.port), pileCount: Self.piles, gunCount: 2)
        config.sourceAddressCount = 4
        config.connectRate = 5000
        let fleet = try PileFleet(config: config, group: MultiThreadedEventLoopGroup.singleton)
        let start = ContinuousClock.now
        await fleet.start()
        let allIn = await platform.eventually(timeout: .seconds(60)) {
            fleet.counters.snapshot().loggedIn == Self.piles
        }
        let elapsed = ContinuousClock.now - start
        let after = ProcessInfoShim.residentKB()
        let snap = fleet.counters.snapshot()
        print(
            "scale: \(Self.piles) piles logged in=\(snap.loggedIn) in \(elapsed); RSS \(before) KB -> \(after) KB, "
                + "\((after - before) * 1024 / max(Self.piles, 1)) B per pile (pile + fake platform side); "
                + "login p50 \(snap.loginLatency.percentileMs(0.5) ?? -1) ms p99 \(snap.loginLatency.percentileMs(0.99) ?? -1) ms")
        #expect(allIn)
        await fleet.stop()
        await platform.shutdown()
    }
}
