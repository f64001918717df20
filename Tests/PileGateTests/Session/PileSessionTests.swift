import Foundation
import NIOCore
import PileGate
import PileSim
import Testing
import YKC

/// A pile's session as the gateway runs it: login, heartbeats per gun, liveness, takeover.
@Suite("Pile sessions over loopback")
struct PileSessionTests {
    @Test("a pile logs in, is registered, and shows online in the admin API")
    func loginAcceptedAndRegistered() async throws {
        try await withGateway { gw in
            let pile = try await gw.pile("32010600019236")
            try await pile.waitForLogin()
            #expect(gw.counters.loginsAccepted.load(ordering: .relaxed) == 1)
            #expect(gw.gateway.directory.session(for: PileID("32010600019236")!) != nil)
            // The registry row is written by the batcher shortly after.
            let stored = try await gw.eventually { try await gw.gateway.registry.record(PileID("32010600019236")!)?.online == true }
            #expect(stored)
            let r = try await gw.http("GET", "/v1/piles/32010600019236")
            #expect(r.status == 200)
            let p = r.object["pile"] as? [String: Any]
            #expect(p?["online"] as? Bool == true)
            #expect(p?["gunCount"] as? Int == 2)
            #expect(p?["protocolVersion"] as? Int == 16)
            #expect((r.object["session"] as? [String: Any])?["lane"] as? String == "")
            await pile.stop()
        }
    }

    @Test("every gun's heartbeat is answered with 0x04 echoing its sequence bytes")
    func heartbeatEchoPerGun() async throws {
        try await withGateway { gw in
            let pile = try await gw.pile("32010600019237", guns: 2)
            try await pile.waitForLogin()
            let state = try await pile.waitUntil(timeout: .seconds(5), "both guns acked twice") { s in
                s.guns.count == 2 && s.guns.allSatisfy { $0.heartbeatsAcked >= 2 }
            }
            for gun in state.guns {
                #expect(gun.lastEchoedSequence == gun.lastHeartbeatSequence || gun.heartbeatsAcked >= 2)
                #expect(gun.unansweredHeartbeats <= 1)
            }
            // Raw check: the reply's sequence bytes and gun equal the request's.
            let raw = try await RawClient.connect(port: gw.pilePort)
            try await raw.send(Frames.login("32010600019238", sequence: 0))
            try await raw.send(Frames.heartbeat("32010600019238", gun: 1, sequence: 0x1234))
            try await raw.send(Frames.heartbeat("32010600019238", gun: 2, sequence: 0xABCD))
            #expect(await gw.eventually { Frames.parse(raw.receivedBytes).filter { $0.code == 0x04 }.count == 2 })
            let replies = Frames.parse(raw.receivedBytes).filter { $0.code == 0x04 }
            #expect(replies.map(\.sequence) == [YKCSequence(counter: 0x1234), YKCSequence(counter: 0xABCD)])
            let guns = replies.compactMap { if case .heartbeatReply(let r) = YKCMessage.decode($0) { r.gun.number } else { nil } }
            #expect(guns == [1, 2])
            await raw.close()
            await pile.stop()
        }
    }

    @Test("frames split across reads, coalesced, or behind garbage are all answered; a cut-off frame at close is counted")
    func framingOnTheSocket() async throws {
        try await withGateway { gw in
            let raw = try await RawClient.connect(port: gw.pilePort)
            let login = Frames.login("32010600019239", sequence: 0).bytes
            // The login in three pieces, each its own TCP write with a pause between.
            for part in [login[0..<3], login[3..<20], login[20...]] {
                try await raw.send(Array(part))
                try await Task.sleep(nanoseconds: 30_000_000)
            }
            #expect(await gw.eventually { Frames.parse(raw.receivedBytes).contains { $0.code == 0x02 } })
            // Two heartbeats in one write, with noise before the second; then one split byte by byte.
            let hb1 = Frames.heartbeat("32010600019239", gun: 1, sequence: 0x0101).bytes
            let hb2 = Frames.heartbeat("32010600019239", gun: 2, sequence: 0x0202).bytes
            try await raw.send(hb1 + [0x00, 0x11, 0x22] + hb2)
            let hb3 = Frames.heartbeat("32010600019239", gun: 1, sequence: 0x0303).bytes
            for b in hb3 { try await raw.send([b]) }
            #expect(await gw.eventually { Frames.parse(raw.receivedBytes).filter { $0.code == 0x04 }.count == 3 })
            let sequences = Frames.parse(raw.receivedBytes).filter { $0.code == 0x04 }.map(\.sequence)
            #expect(sequences == [0x0101, 0x0202, 0x0303].map { YKCSequence(counter: $0) })
            #expect(gw.counters.malformed["garbage"]?.load(ordering: .relaxed) == 1)
            // Half a frame, then the pile goes away: counted as truncated, nothing answered.
            let truncatedBefore = gw.counters.malformed["truncated"]?.load(ordering: .relaxed) ?? 0
            try await raw.send(Array(hb1[0..<8]))
            try await Task.sleep(nanoseconds: 50_000_000)
            await raw.close()
            #expect(await gw.eventually { gw.counters.malformed["truncated"]?.load(ordering: .relaxed) == truncatedBefore + 1 })
            #expect(Frames.parse(raw.receivedBytes).filter { $0.code == 0x04 }.count == 3)
        }
    }

    @Test("a pile that falls silent is closed after the liveness timeout and marked offline")
    func livenessClose() async throws {
        try await withGateway({ $0.livenessTimeout = 0.5 }) { gw in
            let pile = try await gw.pile("32010600019240") {
                $0.heartbeatInterval = .seconds(60)
                $0.requestBillingModel = false
            }
            // The close may come before this test looks, so wait on counts, not on the phase.
            try await pile.waitUntil(timeout: .seconds(6), "logged in, then closed") { $0.loginsAccepted >= 1 && $0.connectionsClosed >= 1 }
            #expect(await gw.eventually { gw.counters.closed[.livenessTimeout]?.load(ordering: .relaxed) == 1 })
            let offline = try await gw.eventually {
                try await gw.gateway.registry.record(PileID("32010600019240")!)?.offlineReason == "liveness_timeout"
            }
            #expect(offline)
            await pile.stop()
        }
    }

    @Test("a connection that never logs in is closed after the login timeout")
    func loginTimeout() async throws {
        try await withGateway({ $0.loginTimeout = 0.3 }) { gw in
            let raw = try await RawClient.connect(port: gw.pilePort)
            #expect(await gw.eventually(timeout: 3) { raw.isClosed })
            #expect(await gw.eventually { gw.counters.closed[.loginTimeout]?.load(ordering: .relaxed) == 1 })
            #expect(gw.counters.pendingLogins.load(ordering: .relaxed) == 0)
        }
    }

    @Test("a slowloris trickling a login byte by byte is closed at the login timeout")
    func slowloris() async throws {
        try await withGateway({ $0.loginTimeout = 0.5 }) { gw in
            let raw = try await RawClient.connect(port: gw.pilePort)
            let bytes = Frames.login("32010600019241").bytes
            for b in bytes.prefix(10) where !raw.isClosed {
                try? await raw.send([b])
                try await Task.sleep(nanoseconds: 100_000_000)
            }
            #expect(await gw.eventually(timeout: 3) { raw.isClosed })
            #expect(await gw.eventually { gw.counters.closed[.loginTimeout]?.load(ordering: .relaxed) == 1 })
            #expect(gw.counters.loginsAccepted.load(ordering: .relaxed) == 0)
        }
    }

    @Test("a second login with the same pile id wins; the old connection is closed")
    func duplicateLoginTakeover() async throws {
        try await withGateway { gw in
            let first = try await gw.pile("32010600019242")
            try await first.waitForLogin()
            let oldConnection = gw.gateway.directory.session(for: PileID("32010600019242")!)?.info.connectionId
            let second = try await gw.pile("32010600019242")
            try await second.waitForLogin()
            try await first.waitUntil(timeout: .seconds(3), "old closed") { $0.connectionsClosed >= 1 }
            #expect(gw.counters.takeovers.load(ordering: .relaxed) == 1)
            #expect(await gw.eventually { gw.counters.closed[.replaced]?.load(ordering: .relaxed) == 1 })
            let now = gw.gateway.directory.session(for: PileID("32010600019242")!)
            #expect(now != nil && now?.info.connectionId != oldConnection)
            #expect(gw.counters.online.load(ordering: .relaxed) == 1)
            // The new session stays online in the registry (the replaced one must not mark it offline).
            try await Task.sleep(nanoseconds: 100_000_000)
            #expect(try await gw.gateway.registry.record(PileID("32010600019242")!)?.online == true)
            _ = try await second.waitUntil(timeout: .seconds(2), "heartbeats continue") { $0.heartbeatsAcked >= 2 }
            await first.stop()
            await second.stop()
        }
    }

    @Test("under the registry policy an unknown pile gets 0x02 result 1 and is closed; a provisioned one logs in")
    func registryPolicy() async throws {
        try await withGateway({ $0.loginPolicy = .registry }) { gw in
            let stranger = try await gw.pile("32010600019243")
            #expect(try await stranger.waitForLoginResult() == .rejected)
            try await stranger.waitUntil(timeout: .seconds(3), "closed") { $0.connectionsClosed >= 1 }
            #expect(gw.counters.loginsRejected.load(ordering: .relaxed) == 1)
            #expect(await gw.eventually { gw.counters.closed[.loginRejected]?.load(ordering: .relaxed) == 1 })
            await stranger.stop()

            let put = try await gw.http("PUT", "/v1/piles/32010600019243")
            #expect(put.status == 201)
            let known = try await gw.pile("32010600019243")
            #expect(try await known.waitForLoginResult() == .accepted)
            await known.stop()
        }
    }

    @Test("frames before login and frames with another pile's id are refused and counted")
    func refusedFrames() async throws {
        try await withGateway { gw in
            let raw = try await RawClient.connect(port: gw.pilePort)
            try await raw.send(Frames.heartbeat("32010600019244", sequence: 7))
            #expect(await gw.eventually { gw.counters.refusedBeforeLogin.load(ordering: .relaxed) == 1 })
            #expect(Frames.parse(raw.receivedBytes).isEmpty)
            try await raw.send(Frames.login("32010600019244"))
            #expect(await gw.eventually { Frames.parse(raw.receivedBytes).contains { $0.code == 0x02 } })
            try await raw.send(Frames.heartbeat("99999999999999", sequence: 8))
            #expect(await gw.eventually { gw.counters.refusedForeignPile.load(ordering: .relaxed) == 1 })
            try await raw.send(Frames.heartbeat("32010600019244", sequence: 9))
            #expect(await gw.eventually { Frames.parse(raw.receivedBytes).contains { $0.code == 0x04 } })
            #expect(Frames.parse(raw.receivedBytes).filter { $0.code == 0x04 }.count == 1)
            await raw.close()
        }
    }

    @Test("the admin API kicks a pile; it reconnects and logs in again")
    func kick() async throws {
        try await withGateway { gw in
            let pile = try await gw.pile("32010600019245") { $0.reconnect = SimulatedPileConfig.fast(pileID: $0.pileID).reconnect }
            try await pile.waitForLogin()
            let r = try await gw.http("DELETE", "/v1/piles/32010600019245/connection")
            #expect(r.status == 202)
            try await pile.waitUntil(timeout: .seconds(3), "kicked") { $0.connectionsClosed >= 1 }
            #expect(await gw.eventually { gw.counters.closed[.kicked]?.load(ordering: .relaxed) == 1 })
            try await pile.waitUntil(timeout: .seconds(5), "back") { $0.loginsAccepted >= 2 && $0.isLoggedIn }
            let missing = try await gw.http("DELETE", "/v1/piles/11111111111111/connection")
            #expect(missing.status == 404)
            await pile.stop()
        }
    }
}
