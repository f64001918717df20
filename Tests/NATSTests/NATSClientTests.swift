import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import NATS
import NATSTestSupport

extension RealServerTests {
    @Suite("NATS core against a real nats-server", .timeLimit(.minutes(1)))
    struct NATSClientTests {
        @Test("publish and subscribe, with wildcards, payloads of every size and CRLF inside")
        func publishSubscribe() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let info = try #require(client.serverInfo)
                #expect(info.headers && info.jetStream && info.maxPayload > 0)
                let all = MessageCollector(try await client.subscribe(to: "pile.>"))
                let one = MessageCollector(try await client.subscribe(to: "pile.*.event"))
                let payloads = ["", "a", "line\r\nbreak", String(repeating: "z", count: 70_000)]
                for (i, payload) in payloads.enumerated() {
                    try client.publish(payload, to: "pile.\(i).event", replyTo: "reply.\(i)")
                }
                try client.publish("other", to: "pile.1.x.y")
                let got = try await all.wait(for: 5)
                #expect(got.map(\.string) == payloads + ["other"])
                #expect(got.first?.replyTo == "reply.0")
                #expect(try await one.wait(for: 4).map(\.subject) == (0..<4).map { "pile.\($0).event" })
                #expect(client.statistics.outMessages == 5)
                await client.close()
                #expect(client.status == .closed)
                #expect(throws: NATSError.connectionClosed) { try client.publish("x", to: "a") }
            }
        }

        @Test("headers travel in HPUB/HMSG")
        func headers() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let collector = MessageCollector(try await client.subscribe(to: "h"))
                var headers = NATSHeaders()
                headers.append("Trace", "1")
                headers.append("Trace", "2")
                headers["Pile"] = "32010200000001"
                try client.publish("body", to: "h", headers: headers)
                let message = try #require(try await collector.wait(for: 1).first)
                #expect(message.string == "body")
                #expect(message.headers?.values(for: "Trace") == ["1", "2"])
                #expect(message.headers?["Pile"] == "32010200000001")
                await client.close()
            }
        }

        @Test("queue groups share messages; UNSUB with max ends a subscription after N")
        func queueGroupsAndAutoUnsubscribe() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let a = MessageCollector(try await client.subscribe(to: "work", queue: "workers"))
                let b = MessageCollector(try await client.subscribe(to: "work", queue: "workers"))
                let limited = try await client.subscribe(to: "work")
                limited.unsubscribe(after: 3)
                let limitedCollector = MessageCollector(limited)
                for i in 0..<200 { try client.publish("\(i)", to: "work") }
                try await client.flush()
                try await waitUntil("200 shared") { a.messages.count + b.messages.count == 200 }
                #expect(!a.messages.isEmpty && !b.messages.isEmpty)
                #expect(Set(a.strings + b.strings).count == 200)
                await limitedCollector.finished()
                #expect(limitedCollector.strings == ["0", "1", "2"])
                await client.close()
            }
        }

        @Test("request-reply over the shared inbox; no responders fails at once; timeouts are bounded")
        func requestReply() async throws {
            try await NATSTestServer.with { server in
                let responder = try await server.connect()
                let requester = try await server.connect()
                let service = try await responder.subscribe(to: "svc.echo")
                let serving = Task {
                    for await request in service {
                        try? responder.respond(to: request, with: ByteBuffer(string: "echo:" + request.string))
                    }
                }
                // Many concurrent requests share the one inbox subscription.
                let answers = try await withThrowingTaskGroup(of: String.self) { group in
                    for i in 0..<50 {
                        group.addTask { try await requester.request("\(i)", to: "svc.echo").string }
                    }
                    return try await group.reduce(into: Set<String>()) { $0.insert($1) }
                }
                #expect(answers == Set((0..<50).map { "echo:\($0)" }))

                let started = ContinuousClock.now
                await #expect(throws: NATSError.noResponders(subject: "svc.nobody")) {
                    _ = try await requester.request("x", to: "svc.nobody", timeout: .seconds(5))
                }
                #expect(ContinuousClock.now - started < .seconds(2))

                // Kept referenced: dropping a subscription unsubscribes it.
                let silent = try await responder.subscribe(to: "svc.silent")
                let timed = ContinuousClock.now
                await #expect(throws: NATSError.timeout) {
                    _ = try await requester.request("x", to: "svc.silent", timeout: .milliseconds(200))
                }
                #expect(ContinuousClock.now - timed < .seconds(2))
                silent.unsubscribe()
                serving.cancel()
                await requester.close()
                await responder.close()
            }
        }

        @Test("publishes from many threads are written in batches: all arrive, each publisher's in order, and close sends the last")
        func coalescedWrites() async throws {
            try await NATSTestServer.with { server in
                let publisher = try await server.connect()
                let reader = try await server.connect()
                let subscription = try await reader.subscribe(to: "burst.>", bufferLimit: 1 << 16)
                let collector = MessageCollector(subscription)
                let perPublisher = 2_000
                await withTaskGroup(of: Void.self) { group in
                    for p in 0..<8 {
                        group.addTask {
                            for i in 0..<perPublisher { try? publisher.publish("\(i)", to: "burst.\(p)") }
                        }
                    }
                }
                // No flush: close() must still send everything published before it.
                await publisher.close()
                let got = try await collector.wait(for: 8 * perPublisher, timeout: .seconds(20))
                #expect(got.count == 8 * perPublisher)
                for p in 0..<8 {
                    let mine = got.filter { $0.subject == "burst.\(p)" }.map(\.string)
                    #expect(mine == (0..<perPublisher).map(String.init), "publisher \(p) out of order or short")
                }
                await reader.close()
            }
        }

        @Test("requests with different timeouts each fail at their own deadline; answered ones are not timed out")
        func requestDeadlines() async throws {
            try await NATSTestServer.with { server in
                let responder = try await server.connect()
                let requester = try await server.connect()
                let silent = try await responder.subscribe(to: "svc.silent")
                let echo = try await responder.subscribe(to: "svc.echo")
                let serving = Task { for await r in echo { try? responder.respond(to: r, with: ByteBuffer(string: r.string)) } }
                let clock = ContinuousClock()
                let start = clock.now
                // The long one first: a sweep that only looked at the oldest request would hold the short one.
                let long = Task { () -> Duration in
                    do { _ = try await requester.request("l", to: "svc.silent", timeout: .seconds(3)) } catch {}
                    return clock.now - start
                }
                try await Task.sleep(for: .milliseconds(50))
                await #expect(throws: NATSError.timeout) {
                    _ = try await requester.request("s", to: "svc.silent", timeout: .milliseconds(300))
                }
                let short = clock.now - start
                #expect(short >= .milliseconds(300) && short < .milliseconds(1500), "short request failed after \(short)")
                // Answered requests in between are not failed by the sweep that ends the others.
                for i in 0..<100 {
                    #expect(try await requester.request("\(i)", to: "svc.echo", timeout: .milliseconds(500)).string == "\(i)")
                }
                let longTook = await long.value
                #expect(longTook >= .seconds(3) && longTook < .seconds(5), "long request failed after \(longTook)")
                serving.cancel()
                silent.unsubscribe()
                await requester.close()
                await responder.close()
            }
        }

        @Test("a handler subscription gets every message in order without a task per message, and its sequence ends on unsubscribe")
        func handlerSubscription() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let seen = NIOLockedValueBox<[String]>([])
                let subscription = try await client.subscribe(to: "handled.*") { m in
                    seen.withLockedValue { $0.append(m.subject + "=" + m.string) }
                }
                let ended = Task { for await _ in subscription {} }
                for i in 0..<500 { try client.publish("\(i)", to: "handled.\(i % 3)") }
                try await client.flush()
                try await waitUntil("500 handled") { seen.withLockedValue { $0.count } == 500 }
                #expect(seen.withLockedValue { $0 } == (0..<500).map { "handled.\($0 % 3)=\($0)" })
                #expect(subscription.deliveredMessages == 500 && subscription.droppedMessages == 0)
                subscription.unsubscribe()
                await ended.value
                try client.publish("late", to: "handled.0")
                try await client.flush()
                try await Task.sleep(for: .milliseconds(100))
                #expect(seen.withLockedValue { $0.count } == 500, "a handler called after unsubscribe")
                await client.close()
            }
        }

        @Test("max_payload from INFO is respected")
        func maxPayload() async throws {
            try await NATSTestServer.with(configuration: "max_payload: 1024") { server in
                let client = try await server.connect()
                #expect(client.serverInfo?.maxPayload == 1024)
                #expect(throws: NATSError.payloadTooLarge(size: 1025, maxPayload: 1024)) {
                    try client.publish([UInt8](repeating: 1, count: 1025), to: "big")
                }
                let collector = MessageCollector(try await client.subscribe(to: "big"))
                try client.publish([UInt8](repeating: 1, count: 1024), to: "big")
                #expect(try await collector.wait(for: 1).first?.payload.readableBytes == 1024)
                #expect(client.status == .connected)
                await client.close()
            }
        }

        @Test("a slow reader's subscription drops beyond its buffer and counts the drops")
        func clientSideSlowConsumer() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let subscription = try await client.subscribe(to: "fast", bufferLimit: 10)
                for i in 0..<100 { try client.publish("\(i)", to: "fast") }
                try await client.flush()
                try await waitUntil { subscription.deliveredMessages == 100 }
                #expect(subscription.droppedMessages == 90)
                #expect(client.statistics.droppedMessages == 90)
                var iterator = subscription.makeAsyncIterator()
                var kept: [String] = []
                for _ in 0..<10 { if let message = await iterator.next() { kept.append(message.string) } }
                #expect(kept == (0..<10).map(String.init))
                await client.close()
            }
        }

        @Test("connecting to nothing fails with a typed error")
        func connectFailure() async throws {
            let port = try await NATSTestServer.freePort()
            var options = NATSClientOptions(servers: [NATSServerAddress(host: "127.0.0.1", port: port)])
            options.connectTimeout = .seconds(2)
            await #expect {
                _ = try await NATSClient.connect(options)
            } throws: { error in
                if case NATSError.connectionFailed = error { return true }
                return false
            }
        }
    }
}
