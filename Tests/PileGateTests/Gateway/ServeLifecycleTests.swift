import Foundation
import NIOCore
import NIOPosix
import PileGate
import PileSim
import Testing
import YKC

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension ReliabilityTests {
    /// `pilegate serve` as a process: start-up failures end it with one line and a non-zero exit;
    /// SIGTERM drains with the API up and ends within a bound, whatever clients do.
    /// One process at a time: each start of a debug `pilegate serve` costs a CPU for a moment, which
    /// the in-process gateways of the other suites need on a small machine.
    @Suite("Serve: start-up failures and shutdown, as a process")
    struct ServeLifecycleTests {
        /// A listening socket holding a loopback port, so the gateway finds it taken.
        static func occupyPort() async throws -> any Channel {
            try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(host: "127.0.0.1", port: 0).get()
        }

        /// The lines the gateway logged at a level of error or above.
        static func errorLines(_ serve: ServeProcess) -> [String] {
            serve.lines.filter { $0.contains(" error ") || $0.contains(" critical ") }
        }

        @Test("the API port taken: one line naming the address, exit 1, within seconds")
        func apiPortTaken() async throws {
            let holder = try await Self.occupyPort()
            let port = try #require(holder.localAddress?.port)
            let serve = try ServeProcess.start(["apiPort": "\(port)"])
            defer { serve.cleanUp() }
            let took = await serve.waitForExit(timeout: 15)
            try? await holder.close()
            #expect(took != nil, "still running: \(serve.stderr)")
            #expect(serve.status == 1)
            let errors = Self.errorLines(serve)
            #expect(errors.count == 1, "\(serve.stderr)")
            #expect(errors.first?.contains("cannot listen for the API on 127.0.0.1:\(port): the address is already in use") == true, "\(serve.stderr)")
        }

        @Test("the pile port taken: one line naming the address, exit 1")
        func pilePortTaken() async throws {
            let holder = try await Self.occupyPort()
            let port = try #require(holder.localAddress?.port)
            let serve = try ServeProcess.start(["pilePort": "\(port)"])
            defer { serve.cleanUp() }
            let took = await serve.waitForExit(timeout: 15)
            try? await holder.close()
            #expect(took != nil, "still running: \(serve.stderr)")
            #expect(serve.status == 1)
            let errors = Self.errorLines(serve)
            #expect(errors.count == 1, "\(serve.stderr)")
            #expect(errors.first?.contains("cannot listen for piles on 127.0.0.1:\(port): the address is already in use") == true, "\(serve.stderr)")
        }

        @Test("an apiHost that does not resolve: one line naming it, exit 1")
        func apiHostUnresolvable() async throws {
            let serve = try ServeProcess.start(["apiHost": "no-such-host.invalid", "apiInsecure": "true"])
            defer { serve.cleanUp() }
            let took = await serve.waitForExit(timeout: 30)
            #expect(took != nil, "still running: \(serve.stderr)")
            #expect(serve.status == 1)
            let errors = Self.errorLines(serve)
            #expect(errors.count == 1, "\(serve.stderr)")
            #expect(errors.first?.contains("cannot listen for the API on no-such-host.invalid:0") == true, "\(serve.stderr)")
        }

        @Test("SIGTERM: /readyz answers 503 through the drain, backends get every pile_offline, then exit 0 with no error logged")
        func drainKeepsTheAPIUp() async throws {
            let serve = try ServeProcess.start(["drainWindow": "2", "hubWarmupWindow": "0"])
            defer { serve.cleanUp() }
            let (pilePort, apiPort) = try await serve.waitUntilStarted()
            let backend = try await TestBackend.connect(apiPort: apiPort)
            try await backend.subscribe(service: "monitor", instance: "m1", events: ["pile_online", "pile_offline"])
            let ids = (0..<8).map { String(66_010_600_000_100 + $0) }
            var piles: [SimulatedPile] = []
            for id in ids {
                var c = SimulatedPileConfig.fast(pileID: PileID(id)!, gunCount: 1)
                c.reconnect = .never
                c.requestBillingModel = false
                let p = try await SimulatedPile.connect(to: pilePort, c)
                try await p.waitForLogin()
                piles.append(p)
            }
            for id in ids { try await backend.waitForEvent("pile_online") { $0["pile"] as? String == id } }
            serve.signal(SIGTERM)
            // Through the drain the API answers, and says not ready.
            var readiness: [Int] = []
            let drainEnd = Date().addingTimeInterval(1.5)
            while Date() < drainEnd {
                readiness.append((try? await Self.status(apiPort, "/readyz")) ?? -1)
                try await Task.sleep(nanoseconds: 100_000_000)
            }
            // (The first answers may come before the signal is handled.)
            let afterSignal = readiness.drop { $0 == 200 }
            #expect(afterSignal.count >= 5 && afterSignal.allSatisfy { $0 == 503 }, "readiness during the drain: \(readiness)")
            for id in ids {
                try await backend.waitForEvent("pile_offline", timeout: 5) { $0["pile"] as? String == id }
            }
            let offline = backend.events.filter { $0["event"] as? String == "pile_offline" }
            #expect(offline.compactMap { ($0["data"] as? [String: Any])?["reason"] as? String }.allSatisfy { $0 == "shutdown" })
            let took = await serve.waitForExit(timeout: 15)
            #expect(took != nil, "did not exit: \(serve.stderr)")
            #expect(serve.status == 0)
            #expect(Self.errorLines(serve).isEmpty, "a clean shutdown logs no error: \(Self.errorLines(serve))")
            #expect(serve.stderr.contains("pilegate stopped"))
            for p in piles { await p.stop() }
            await backend.close()
        }

        @Test("SIGTERM with a backend that stopped reading its WebSocket: exit within the drain window plus the grace")
        func backendThatDoesNotRead() async throws {
            let serve = try ServeProcess.start(["drainWindow": "0.5", "shutdownGrace": "1", "hubWarmupWindow": "0"])
            defer { serve.cleanUp() }
            let (pilePort, apiPort) = try await serve.waitUntilStarted()
            // A raw WebSocket that subscribes and then never reads again.
            let ws = try await RawClient.connect(port: apiPort, autoRead: true, receiveBuffer: 4096)
            try await ws.send(Array("GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".utf8))
            _ = await Self.waitFor { String(decoding: ws.receivedBytes, as: UTF8.self).contains("\r\n\r\n") }
            try await ws.send(Self.maskedText(#"{"type":"subscribe","service":"stuck","instance":"s1","events":["*"]}"#))
            _ = await Self.waitFor { String(decoding: ws.receivedBytes, as: UTF8.self).contains("subscribed") }
            try await ws.channel.setOption(.autoRead, value: false).get()
            // Events keep coming for it until its socket is full: piles heartbeating fast.
            var piles: [SimulatedPile] = []
            for i in 0..<10 {
                var c = SimulatedPileConfig.fast(pileID: PileID(String(66_010_600_000_200 + i))!, gunCount: 2)
                c.reconnect = .never
                c.requestBillingModel = false
                let pile = try await SimulatedPile.connect(to: pilePort, c)
                try await pile.waitForLogin()
                piles.append(pile)
            }
            try await Task.sleep(nanoseconds: 2_500_000_000)
            serve.signal(SIGTERM)
            // drain 0.5 + pile grace (none left) + API: graceful 1 s, then cut off within 1 s more.
            let took = await serve.waitForExit(timeout: 10)
            #expect(took != nil, "did not exit: \(serve.stderr)")
            if let took { #expect(took < 6, "took \(took) s") }
            #expect(serve.status == 0)
            for p in piles { await p.stop() }
            await ws.close()
        }

        static func status(_ port: Int, _ path: String) async throws -> Int {
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!, timeoutInterval: 2)
            request.httpMethod = "GET"
            let (_, response) = try await URLSession.shared.data(for: request)
            return (response as? HTTPURLResponse)?.statusCode ?? 0
        }

        static func waitFor(timeout: TimeInterval = 5, _ condition: () -> Bool) async -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if condition() { return true }
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
            return condition()
        }

        /// A client's WebSocket text frame (clients must mask).
        static func maskedText(_ text: String) -> [UInt8] {
            let payload = Array(text.utf8)
            let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
            var out: [UInt8] = [0x81]
            if payload.count < 126 {
                out.append(0x80 | UInt8(payload.count))
            } else {
                out.append(0x80 | 126)
                out.append(UInt8(payload.count >> 8))
                out.append(UInt8(payload.count & 0xFF))
            }
            out += mask
            for (i, b) in payload.enumerated() { out.append(b ^ mask[i % 4]) }
            return out
        }
    }
}
