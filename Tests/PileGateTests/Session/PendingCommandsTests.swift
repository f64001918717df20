import Foundation
import NIOCore
@testable import PileGate
import Testing
import YKC

/// Commands waiting for a pile's reply (issue 14.6): a cap, constant-time matching, deadlines and
/// memory given back — unit-tested without sockets, then over real ones.
@Suite("Pending commands")
struct PendingCommandsTests {
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test("replies match by code and sequence, else by code and gun oldest first; a command without a gun takes any gun")
    func matching() {
        var p = PendingCommands<String>(limit: 10)
        let seq = { (n: UInt16) in YKCSequence(counter: n) }
        #expect(p.add(replyCode: 0x13, sequence: seq(1), gun: 1, deadline: t0, token: "rt gun1 #1") != nil)
        #expect(p.add(replyCode: 0x13, sequence: seq(2), gun: 2, deadline: t0, token: "rt gun2") != nil)
        #expect(p.add(replyCode: 0x13, sequence: seq(3), gun: 1, deadline: t0, token: "rt gun1 #2") != nil)
        #expect(p.add(replyCode: 0x91, sequence: seq(4), gun: nil, deadline: t0, token: "reboot") != nil)
        // By sequence, whatever the order.
        #expect(p.match(code: 0x13, sequence: seq(3), gun: 1) == "rt gun1 #2")
        // No echo: by code and gun, oldest first.
        #expect(p.match(code: 0x13, sequence: seq(99), gun: 2) == "rt gun2")
        #expect(p.match(code: 0x13, sequence: seq(99), gun: 2) == nil)
        #expect(p.match(code: 0x13, sequence: seq(99), gun: 1) == "rt gun1 #1")
        // Wrong code matches nothing; a gun-less command takes a reply for any gun.
        #expect(p.match(code: 0x33, sequence: seq(4), gun: nil) == nil)
        #expect(p.match(code: 0x91, sequence: seq(77), gun: 5) == "reboot")
        #expect(p.count == 0)
    }

    @Test("the cap refuses the next command until one is answered or expires; deadlines come out oldest first")
    func capAndDeadlines() {
        var p = PendingCommands<Int>(limit: 3)
        for i in 0..<3 {
            #expect(p.add(replyCode: 0x91, sequence: YKCSequence(counter: UInt16(i)), gun: nil, deadline: t0 + .seconds(Int64(3 - i)), token: i) != nil)
        }
        #expect(p.isFull)
        #expect(p.add(replyCode: 0x91, sequence: YKCSequence(counter: 9), gun: nil, deadline: t0, token: 9) == nil)
        #expect(p.earliestDeadline == t0 + .seconds(1))
        #expect(p.expire(now: t0 + .milliseconds(500)) == [])
        #expect(p.expire(now: t0 + .seconds(2)) == [1, 2])
        #expect(p.count == 1 && !p.isFull)
        #expect(p.add(replyCode: 0x91, sequence: YKCSequence(counter: 10), gun: nil, deadline: t0 + .seconds(9), token: 10) != nil)
        #expect(p.removeAll() == [0, 10])
        #expect(p.earliestDeadline == nil)
    }

    @Test("memory is given back once nothing waits, and matching stays fast with many waiting")
    func memoryAndScale() {
        var p = PendingCommands<Int>(limit: 20_000)
        for i in 0..<20_000 {
            _ = p.add(replyCode: 0x57, sequence: YKCSequence(counter: UInt16(truncatingIfNeeded: i)), gun: nil, deadline: t0, token: i)
        }
        #expect(p.tableCapacity > 20_000)
        // 20,000 answered without echoing the sequence: each is a hash lookup, not a scan.
        var answered = 0
        while p.match(code: 0x57, sequence: YKCSequence(0xEE, 0xEE), gun: 1) != nil { answered += 1 }
        #expect(answered == 20_000)
        #expect(p.count == 0)
        #expect(p.tableCapacity == 0)
    }

    @Test("over sockets: a silent pile gets at most maxCommandsPerPile waiting, the rest too_many_commands at once; a socket at most hubMaxCommandsPerSocket")
    func limitsOverSockets() async throws {
        try await withHub(hub: { $0.maxCommandsPerSocket = 5 }, {
            $0.maxCommandsPerPile = 3
            $0.livenessTimeout = 120
        }) { gw, _ in
            var piles: [RawClient] = []
            for id in ["55010600006001", "55010600006002", "55010600006003"] {
                let raw = try await RawClient.connect(port: gw.pilePort)
                try await raw.send(Frames.login(id))
                #expect(await gw.eventually { gw.gateway.directory.session(for: PileID(id)!) != nil })
                piles.append(raw)
            }
            // Per pile, over HTTP: 3 wait, the 4th and 5th are refused with 429 right away.
            let results = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<5 {
                    group.addTask {
                        try await gw.http("POST", "/v1/piles/55010600006001/commands/time_sync?timeout=1.5").status
                    }
                }
                var out: [Int] = []
                for try await s in group { out.append(s) }
                return out.sorted()
            }
            #expect(results == [429, 429, 504, 504, 504])
            #expect(Frames.parse(piles[0].receivedBytes).filter { $0.code == 0x56 }.count == 3)
            // After the timeouts the pile takes commands again.
            let again = try await gw.http("POST", "/v1/piles/55010600006001/commands/time_sync?timeout=0.2")
            #expect(again.status == 504)
            // Per socket: 5 running over three piles, the 6th refused.
            let ops = try await TestBackend.connect(apiPort: gw.apiPort)
            try await ops.subscribe(service: "ops", instance: "o", events: ["pile_online"])
            for i in 0..<6 {
                let pile = "5501060000600\(2 + i % 2)"
                ops.send(#"{"type":"command","requestId":"c\#(i)","pile":"\#(pile)","command":"time_sync","timeout":2}"#)
                try await Task.sleep(nanoseconds: 20_000_000)
            }
            let refused = try await ops.waitFor("too_many_commands") { $0["error"] as? String == "too_many_commands" }
            #expect(refused["requestId"] as? String == "c5")
            #expect((refused["message"] as? String)?.contains("hubMaxCommandsPerSocket") == true)
            let metrics = try await gw.http("GET", "/metrics").body
            #expect(metrics.contains(#"pilegate_commands_refused_total{limit="pile"} 2"#))
            #expect(metrics.contains(#"pilegate_commands_refused_total{limit="socket"} 1"#))
            await ops.close()
            for p in piles { await p.close() }
        }
    }
}
