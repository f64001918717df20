import Foundation
import NIOCore
import NIOPosix
import PileGate
import PileSim
import Testing
import YKC

/// Each `pilegate simulate --misbehave` scenario against a real gateway over loopback: the
/// gateway closes the connection for the documented reason (docs/SECURITY.md, "Input bounds"),
/// counts it, and goes on serving a well-behaved pile.
@Suite("Misbehaving piles")
struct MisbehaviourTests {
    /// Runs `scenario` for at most `seconds` and checks the gateway closed it with `reason`.
    func drive(
        _ scenario: Misbehaviour, id: String, rate: Double? = nil, seconds: Double = 4, gw: TestGateway,
        reason: OfflineReason
    ) async throws -> MisbehaviourReport {
        let target = try SocketAddress(ipAddress: "127.0.0.1", port: gw.pilePort)
        let report = try await MisbehavingPile.run(
            scenario, target: target, pileID: PileID(id) ?? PileID(raw: 0), rate: rate,
            duration: .milliseconds(Int64(seconds * 1000)), group: MultiThreadedEventLoopGroup.singleton)
        #expect(report.closedByGateway, "\(report.line)")
        #expect(
            await gw.eventually(timeout: 3) { gw.counters.closed[reason]?.load(ordering: .relaxed) == 1 },
            "closed: \(gw.counters.snapshot().closed.filter { $0.value > 0 })")
        return report
    }

    /// A well-behaved pile still logs in and is answered.
    func stillHealthy(_ gw: TestGateway, id: String) async throws {
        let good = try await gw.pile(id)
        try await good.waitUntil(timeout: .seconds(3), "served") { $0.isLoggedIn && $0.heartbeatsAcked >= 1 }
        await good.stop()
    }

    func malformedCount(_ gw: TestGateway) -> Int {
        gw.counters.malformed.values.reduce(0) { $0 + $1.load(ordering: .relaxed) }
    }

    @Test("garbage: counted as malformed, closed malformed_input")
    func garbage() async throws {
        try await withGateway({ $0.maxMalformedFrames = 5 }) { gw in
            _ = try await drive(.garbage, id: "32010600019301", gw: gw, reason: .malformedInput)
            #expect(malformedCount(gw) > 5)
            try await stillHealthy(gw, id: "32010600019302")
        }
    }

    @Test("oversize: full-length frames that never check out are malformed, closed malformed_input")
    func oversize() async throws {
        try await withGateway({ $0.maxMalformedFrames = 5 }) { gw in
            _ = try await drive(.oversize, id: "32010600019303", gw: gw, reason: .malformedInput)
            #expect((gw.counters.malformed["crc_mismatch"]?.load(ordering: .relaxed) ?? 0) >= 1, "\(gw.counters.snapshot().malformed)")
            try await stillHealthy(gw, id: "32010600019304")
        }
    }

    @Test("bad-crc: login frames with a wrong CRC are never taken as a login, closed malformed_input")
    func badCRC() async throws {
        try await withGateway({ $0.maxMalformedFrames = 5 }) { gw in
            _ = try await drive(.badCRC, id: "32010600019305", gw: gw, reason: .malformedInput)
            #expect((gw.counters.malformed["crc_mismatch"]?.load(ordering: .relaxed) ?? 0) >= 1, "\(gw.counters.snapshot().malformed)")
            #expect(gw.counters.loginsAccepted.load(ordering: .relaxed) == 0)
            try await stillHealthy(gw, id: "32010600019306")
        }
    }

    @Test("before-login: business frames before a login are refused, closed refused_frames")
    func beforeLogin() async throws {
        try await withGateway({
            $0.maxRefusedFrames = 5
            $0.loginTimeout = 30
        }) { gw in
            _ = try await drive(.beforeLogin, id: "32010600019307", gw: gw, reason: .refusedFrames)
            #expect(gw.counters.refusedBeforeLogin.load(ordering: .relaxed) >= 5)
            try await stillHealthy(gw, id: "32010600019308")
        }
    }

    @Test("flood: frames far above the rate limit are throttled, then closed rate_limit")
    func flood() async throws {
        try await withGateway({
            $0.frameRatePerSecond = 20
            $0.frameBurst = 20
            $0.throttlePause = 0.1
            $0.maxThrottleEpisodes = 2
            $0.throttleWindow = 30
        }) { gw in
            let report = try await drive(.flood, id: "32010600019309", gw: gw, reason: .rateLimited)
            #expect(report.loggedIn)
            #expect(gw.counters.throttleEpisodes.load(ordering: .relaxed) >= 2)
            try await stillHealthy(gw, id: "32010600019310")
        }
    }

    @Test("slowloris: a login trickled a byte at a time is closed login_timeout")
    func slowloris() async throws {
        try await withGateway({ $0.loginTimeout = 0.5 }) { gw in
            let report = try await drive(.slowloris, id: "32010600019311", rate: 10, gw: gw, reason: .loginTimeout)
            #expect(report.unitsSent >= 2)
            #expect(gw.counters.loginsAccepted.load(ordering: .relaxed) == 0)
            try await stillHealthy(gw, id: "32010600019312")
        }
    }

    @Test("never-read: a pile that logs in and stops reading is closed slow_reader")
    func neverRead() async throws {
        try await withGateway({
            $0.writeBufferHighWater = 1_024
            $0.slowReaderTimeout = 0.5
            $0.socketSendBuffer = 4_096
            $0.frameRatePerSecond = 1_000_000
            $0.frameBurst = 1_000_000
            $0.byteRatePerSecond = 100_000_000
            $0.byteBurst = 100_000_000
        }) { gw in
            let report = try await drive(.neverRead, id: "32010600019313", rate: 20_000, gw: gw, reason: .slowReader)
            #expect(report.loggedIn)
            #expect(gw.counters.slowReaderEpisodes.load(ordering: .relaxed) >= 1)
            try await stillHealthy(gw, id: "32010600019314")
        }
    }
}
