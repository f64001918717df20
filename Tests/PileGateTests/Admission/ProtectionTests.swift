import Foundation
import Logging
import NIOCore
import PileGate
import PileSim
import Testing
import YKC

/// The gateway protects itself and the platform: hostile clients, slow readers, flapping,
/// rate limits, global caps, and a graceful drain.
@Suite("Protection and limits")
struct ProtectionTests {
    @Test("a garbage-spewing client is cut off while well-behaved piles keep being served")
    func garbageClientCutOff() async throws {
        try await withGateway({ $0.maxMalformedFrames = 5 }) { gw in
            let good = try await gw.pile("32010600019250")
            try await good.waitForLogin()
            let before = await good.state().heartbeatsAcked
            let hostile = try await RawClient.connect(port: gw.pilePort)
            var rng = SystemRandomNumberGenerator()
            for _ in 0..<40 where !hostile.isClosed {
                // Candidate frames with bad CRCs and plain noise.
                var junk: [UInt8] = [0x68, 0x0D] + (0..<15).map { _ in UInt8.random(in: 0...255, using: &rng) }
                junk += (0..<30).map { _ in UInt8.random(in: 0...0x67, using: &rng) }
                try? await hostile.send(junk)
            }
            #expect(await gw.eventually(timeout: 3) { hostile.isClosed })
            #expect(await gw.eventually { gw.counters.closed[.malformedInput]?.load(ordering: .relaxed) == 1 })
            let malformed = gw.counters.malformed.values.reduce(0) { $0 + $1.load(ordering: .relaxed) }
            #expect(malformed > 5)
            try await good.waitUntil(timeout: .seconds(3), "still served") { $0.heartbeatsAcked >= before + 4 && $0.isLoggedIn }
            await good.stop()
        }
    }

    @Test("a pile that stops reading is paused, then closed as a slow reader; memory stays bounded")
    func slowReader() async throws {
        try await withGateway({
            $0.writeBufferHighWater = 1_024
            $0.slowReaderTimeout = 0.5
            $0.socketSendBuffer = 4_096
            $0.frameRatePerSecond = 1_000_000
            $0.frameBurst = 1_000_000
            $0.byteRatePerSecond = 100_000_000
            $0.byteBurst = 100_000_000
        }) { gw in
            let raw = try await RawClient.connect(port: gw.pilePort, autoRead: false, receiveBuffer: 4_096)
            try await raw.send(Frames.login("32010600019251"))
            // Heartbeats in bulk: every one produces a 17-byte reply the client never reads.
            var batch: [UInt8] = []
            for i in 0..<200 { batch += Frames.heartbeat("32010600019251", sequence: UInt16(i)).bytes }
            for _ in 0..<50 where !raw.isClosed {
                try? await raw.send(batch)
            }
            #expect(await gw.eventually(timeout: 5) { gw.counters.closed[.slowReader]?.load(ordering: .relaxed) == 1 })
            #expect(gw.counters.slowReaderEpisodes.load(ordering: .relaxed) >= 1)
            await raw.close()
        }
    }

    @Test("an address that connects too often is banned for a while (flapping)")
    func flappingBan() async throws {
        try await withGateway({
            $0.flapMaxConnectsPerAddress = 3
            $0.flapWindow = 30
            $0.flapBanDuration = 60
        }) { gw in
            for _ in 0..<3 {
                let c = try await RawClient.connect(port: gw.pilePort)
                try await c.send(Frames.login("32010600019252"))
                #expect(await gw.eventually { Frames.parse(c.receivedBytes).contains { $0.code == 0x02 } })
                await c.close()
            }
            let banned = try await RawClient.connect(port: gw.pilePort)
            try? await banned.send(Frames.login("32010600019252"))
            #expect(await gw.eventually(timeout: 3) { banned.isClosed })
            #expect(Frames.parse(banned.receivedBytes).isEmpty)
            #expect(gw.counters.refused[.addressBanned]?.load(ordering: .relaxed) == 1)
            #expect(gw.counters.flapBans.load(ordering: .relaxed) == 1)
            let stats = try await gw.http("GET", "/v1/stats")
            #expect(stats.object["bannedAddresses"] as? Int == 1)
        }
    }

    @Test("a pile id that logs in too often is refused for a while, from any address")
    func pileFlappingBan() async throws {
        try await withGateway({
            $0.flapMaxConnects = 2
            $0.flapWindow = 30
            $0.flapBanDuration = 60
            $0.maxConnectionsPerAddress = 100
        }) { gw in
            // Address flapping is per source address; spread over 127.0.0.x so only the pile id trips.
            for i in 0..<3 {
                var c = SimulatedPileConfig.fast(pileID: PileID("32010600019253")!, gunCount: 1)
                c.reconnect = .never
                c.sourceAddress = try SocketAddress(ipAddress: "127.0.0.\(10 + i)", port: 0)
                let p = try await SimulatedPile.connect(to: gw.pilePort, c)
                let result = try await p.waitForLoginResult()
                #expect(result == (i < 2 ? .accepted : .rejected))
                await p.stop()
            }
            #expect(gw.counters.refused[.pileBanned]?.load(ordering: .relaxed) == 1)
        }
    }

    @Test("a pile over its frame rate is throttled (reads paused), then closed if it keeps it up")
    func perConnectionRateLimit() async throws {
        try await withGateway({
            $0.frameRatePerSecond = 20
            $0.frameBurst = 20
            $0.throttlePause = 0.1
            $0.maxThrottleEpisodes = 2
            $0.throttleWindow = 30
        }) { gw in
            let raw = try await RawClient.connect(port: gw.pilePort)
            try await raw.send(Frames.login("32010600019254"))
            #expect(await gw.eventually { Frames.parse(raw.receivedBytes).contains { $0.code == 0x02 } })
            var seq: UInt16 = 0
            for _ in 0..<200 where !raw.isClosed {
                var batch: [UInt8] = []
                for _ in 0..<25 {
                    seq &+= 1
                    batch += Frames.heartbeat("32010600019254", sequence: seq).bytes
                }
                try? await raw.send(batch)
                try await Task.sleep(nanoseconds: 20_000_000)
            }
            #expect(await gw.eventually(timeout: 5) { raw.isClosed })
            #expect(gw.counters.throttleEpisodes.load(ordering: .relaxed) >= 2)
            #expect(
                await gw.eventually { gw.counters.closed[.rateLimited]?.load(ordering: .relaxed) == 1 },
                "closed: \(gw.counters.snapshot().closed.filter { $0.value > 0 })")
            // A well-behaved pile on the same gateway is unaffected.
            let good = try await gw.pile("32010600019255")
            try await good.waitUntil(timeout: .seconds(3), "served") { $0.heartbeatsAcked >= 2 }
            await good.stop()
        }
    }

    @Test("connections beyond maxConnections are refused at once")
    func maxConnections() async throws {
        try await withGateway({ $0.maxConnections = 2 }) { gw in
            let a = try await gw.pile("32010600019256")
            let b = try await gw.pile("32010600019257")
            try await a.waitForLogin()
            try await b.waitForLogin()
            let c = try await RawClient.connect(port: gw.pilePort)
            try? await c.send(Frames.login("32010600019258"))
            #expect(await gw.eventually(timeout: 3) { c.isClosed })
            #expect(gw.counters.refused[.maxConnections]?.load(ordering: .relaxed) == 1)
            #expect(gw.counters.connections.load(ordering: .relaxed) == 2)
            await a.stop()
            #expect(await gw.eventually { gw.counters.connections.load(ordering: .relaxed) == 1 })
            let d = try await gw.pile("32010600019259")
            try await d.waitForLogin()
            await b.stop()
            await d.stop()
        }
    }

    @Test("connections per source address are capped (piles behind one concentrator share it)")
    func maxConnectionsPerAddress() async throws {
        try await withGateway({
            $0.maxConnectionsPerAddress = 2
            $0.loginTimeout = 30
        }) { gw in
            let a = try await RawClient.connect(port: gw.pilePort)
            let b = try await RawClient.connect(port: gw.pilePort)
            let c = try await RawClient.connect(port: gw.pilePort)
            // Accepts land on two event loops, so which of the three is refused is not fixed.
            #expect(await gw.eventually(timeout: 3) { [a, b, c].filter(\.isClosed).count == 1 })
            try await Task.sleep(nanoseconds: 100_000_000)
            #expect([a, b, c].filter(\.isClosed).count == 1)
            #expect(gw.counters.refused[.maxConnectionsPerAddress]?.load(ordering: .relaxed) == 1)
            for x in [a, b, c] { await x.close() }
        }
    }

    @Test("connections still waiting to log in are capped")
    func maxPendingLogins() async throws {
        try await withGateway({
            $0.maxPendingLogins = 2
            $0.loginTimeout = 30
        }) { gw in
            let a = try await RawClient.connect(port: gw.pilePort)
            #expect(await gw.eventually { gw.counters.pendingLogins.load(ordering: .relaxed) == 1 })
            let b = try await RawClient.connect(port: gw.pilePort)
            #expect(await gw.eventually { gw.counters.pendingLogins.load(ordering: .relaxed) == 2 })
            let c = try await RawClient.connect(port: gw.pilePort)
            #expect(await gw.eventually(timeout: 3) { c.isClosed })
            #expect(gw.counters.refused[.maxPendingLogins]?.load(ordering: .relaxed) == 1)
            // Once one logs in, room frees up.
            try await a.send(Frames.login("32010600019260"))
            #expect(await gw.eventually { gw.counters.pendingLogins.load(ordering: .relaxed) == 1 })
            let d = try await RawClient.connect(port: gw.pilePort)
            try await Task.sleep(nanoseconds: 200_000_000)
            #expect(!d.isClosed)
            for x in [a, b, d] { await x.close() }
        }
    }

    @Test("logins beyond the login pace are deferred, not refused: a burst is admitted steadily")
    func loginPacing() async throws {
        try await withGateway({
            $0.loginRatePerSecond = 5
            $0.loginTimeout = 30
        }) { gw in
            // Connect first, then send every login at once.
            var clients: [RawClient] = []
            for _ in 0..<25 { clients.append(try await RawClient.connect(port: gw.pilePort)) }
            let started = Date()
            for (i, c) in clients.enumerated() { try await c.send(Frames.login(String(32_010_600_019_300 + i))) }
            let all = await gw.eventually(timeout: 15) { gw.counters.loginsAccepted.load(ordering: .relaxed) == 25 }
            #expect(all)
            // 5 fit the burst; the rest waited for tokens at 5/s instead of being refused.
            #expect(gw.counters.loginsDeferred.load(ordering: .relaxed) >= 5)
            #expect(gw.counters.loginsRejected.load(ordering: .relaxed) == 0)
            #expect(Date().timeIntervalSince(started) >= 0.5)
            for c in clients { await c.close() }
        }
    }

    @Test("graceful shutdown stops accepting, closes every pile (logged in or not) with reason shutdown, and records it")
    func gracefulShutdown() async throws {
        let gw = try await TestGateway.start { $0.drainWindow = 0.3 }
        var piles: [SimulatedPile] = []
        for i in 0..<5 {
            let p = try await gw.pile(String(32_010_600_019_400 + i))
            try await p.waitForLogin()
            piles.append(p)
        }
        // A connection that never logs in is closed too (by its event loop's liveness sweeper).
        let silent = try await RawClient.connect(port: gw.pilePort)
        #expect(await gw.eventually { gw.counters.connections.load(ordering: .relaxed) == 6 })
        await gw.gateway.shutdown()
        for p in piles {
            try await p.waitUntil(timeout: .seconds(3), "closed by shutdown") { $0.connectionsClosed >= 1 }
        }
        #expect(await gw.eventually { silent.isClosed })
        #expect(await gw.eventually { gw.counters.closed[.shutdown]?.load(ordering: .relaxed) == 6 })
        // Recorded in the file: the registry closes at shutdown, so read it as the next start would.
        let registry = try PileRegistry(directory: gw.dataDirectory, logger: Logger(label: "test"))
        let offline = try await registry.records(online: false, after: nil, limit: 100)
        #expect(offline.filter { $0.offlineReason == "shutdown" }.count == 5)
        await registry.close()
        // The listener is gone.
        await #expect(throws: (any Error).self) { _ = try await RawClient.connect(port: gw.pilePort) }
        for p in piles { await p.stop() }
        try? FileManager.default.removeItem(atPath: gw.dataDirectory)
    }
}
