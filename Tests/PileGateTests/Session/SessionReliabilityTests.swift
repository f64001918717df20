import Foundation
import NIOCore
@testable import PileGate
import Testing
import YKC

/// Session defects found by hostile and unlucky piles (issue 14, items 10, 11 and 16).
@Suite("Session reliability: liveness by frames, takeovers, cut-off frames")
struct SessionReliabilityTests {
    @Test("a logged-in pile that trickles bytes of a frame that never completes is closed at the liveness timeout")
    func trickleIsNotLiveness() async throws {
        try await withGateway({ $0.livenessTimeout = 1 }) { gw in
            let raw = try await RawClient.connect(port: gw.pilePort)
            // The login, the start of a frame announcing 255 body bytes, then a byte every 0.2 s.
            try await raw.send(Frames.login("55010600004001").bytes + [0x68, 0xFF])
            let started = Date()
            while !raw.isClosed && Date().timeIntervalSince(started) < 4 {
                try? await raw.send([0x00])
                try await Task.sleep(nanoseconds: 200_000_000)
            }
            #expect(raw.isClosed, "still open after 4 s with a 1 s liveness timeout")
            #expect(Frames.parse(raw.receivedBytes).contains { $0.code == 0x02 })
            #expect(await gw.eventually { gw.counters.closed[.livenessTimeout]?.load(ordering: .relaxed) == 1 })
        }
    }

    @Test("complete frames keep a session alive past the liveness timeout")
    func framesAreLiveness() async throws {
        try await withGateway({ $0.livenessTimeout = 3 }) { gw in
            let raw = try await RawClient.connect(port: gw.pilePort)
            try await raw.send(Frames.login("55010600004002"))
            for i in 0..<10 {
                try await Task.sleep(nanoseconds: 500_000_000)
                try? await raw.send(Frames.heartbeat("55010600004002", sequence: UInt16(i + 1)))
            }
            #expect(!raw.isClosed, "closed: \(gw.counters.snapshot().closed.filter { $0.value > 0 })")
            await raw.close()
        }
    }

    @Test("a frame cut off when the pile closes counts once, as truncated, not also as garbage")
    func cutOffFrameCountsOnce() async throws {
        try await withGateway { gw in
            let raw = try await RawClient.connect(port: gw.pilePort)
            try await raw.send(Frames.login("55010600004003"))
            #expect(await gw.eventually { Frames.parse(raw.receivedBytes).contains { $0.code == 0x02 } })
            let hb = Frames.heartbeat("55010600004003").bytes
            try await raw.send(Array(hb.dropLast(4)))
            try await Task.sleep(nanoseconds: 100_000_000)
            await raw.close()
            #expect(await gw.eventually { gw.counters.closed[.closedByPile]?.load(ordering: .relaxed) == 1 })
            #expect(gw.counters.malformed["truncated"]?.load(ordering: .relaxed) == 1)
            #expect(gw.counters.malformed["garbage"]?.load(ordering: .relaxed) == 0)
            #expect(gw.counters.garbageBytes.load(ordering: .relaxed) == 0)
        }
    }

    @Test("a pile that logs in anew and closes its old connection stays online; no pile_offline follows the new pile_online",
          arguments: [0, 1])
    func takeoverRace(variant: Int) async throws {
        try await withHub({
            $0.flapMaxConnects = 1_000
            $0.flapMaxConnectsPerAddress = 100_000
        }) { gw, _ in
            let backend = try await TestBackend.connect(apiPort: gw.apiPort)
            try await backend.subscribe(service: "monitor", instance: "m", events: ["pile_online", "pile_offline"])
            let id = "5501060000410\(variant)"
            let first = try await RawClient.connect(port: gw.pilePort)
            try await first.send(Frames.login(id))
            #expect(await gw.eventually { Frames.parse(first.receivedBytes).contains { $0.code == 0x02 } })
            var old = first
            for round in 0..<20 {
                let new = try await RawClient.connect(port: gw.pilePort)
                let previous = old
                try await new.send(Frames.login(id))
                if variant == 0 {
                    // As the issue found it: the old connection closed right after the new login is accepted.
                    let deadline = Date().addingTimeInterval(5)
                    while !new.receivedBytes.contains(0x02) && Date() < deadline { await Task.yield() }
                } else {
                    // Racing the login itself: closed while the new one is being decided.
                    try await Task.sleep(nanoseconds: UInt64(round % 4) * 250_000)
                }
                await previous.close()
                #expect(await gw.eventually { gw.gateway.directory.session(for: PileID(id)!) != nil }, "round \(round)")
                old = new
            }
            // Settle, then every session's events must end with the current one online.
            #expect(await gw.eventually {
                let mine = backend.events.filter { $0["pile"] as? String == id }
                return mine.last?["event"] as? String == "pile_online"
                    && ((mine.last?["data"] as? [String: Any])?["connectionId"] as? Int).map { UInt64($0) }
                        == gw.gateway.directory.session(for: PileID(id)!)?.info.connectionId
            })
            try await Task.sleep(nanoseconds: 300_000_000)
            let mine = backend.events.filter { $0["pile"] as? String == id }
            #expect(mine.last?["event"] as? String == "pile_online", "a pile_offline came after the last pile_online")
            // Per connection: online, then at most one offline, never an offline after a newer online.
            var onlineOrder: [Int] = []
            for e in mine {
                let conn = ((e["data"] as? [String: Any])?["connectionId"] as? Int) ?? -1
                if e["event"] as? String == "pile_online" {
                    onlineOrder.append(conn)
                } else {
                    #expect(onlineOrder.last == conn || conn == -1, "pile_offline of \(conn) after a newer pile_online")
                    #expect(((e["data"] as? [String: Any])?["reason"] as? String) != "replaced_by_new_login")
                }
            }
            _ = try await gw.gateway.registry.flush()
            #expect(try await gw.gateway.registry.record(PileID(id)!)?.online == true)
            #expect(gw.counters.online.load(ordering: .relaxed) == 1)
            await old.close()
            await backend.close()
        }
    }
}
