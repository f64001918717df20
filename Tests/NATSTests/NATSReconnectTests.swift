import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import NATS
import NATSTestSupport

extension RealServerTests {
    @Suite("NATS reconnect, buffering and slow consumers against a real nats-server", .timeLimit(.minutes(1)))
    struct NATSReconnectTests {
        @Test("a server restart in the middle of traffic: reconnect, resubscribe, buffered publishes go through")
        func restartMidTraffic() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let other = try await server.connect()
                let own = MessageCollector(try await client.subscribe(to: "traffic.>"))
                let theirs = MessageCollector(try await other.subscribe(to: "traffic.>"))
                let statuses = client.statusChanges()

                for i in 0..<100 { try client.publish("\(i)", to: "traffic.a") }
                try await own.wait(for: 100)
                try await theirs.wait(for: 100)

                await server.stop()
                try await waitUntil("client sees the loss") { client.status == .reconnecting }
                // Published while the server is down: kept in the reconnect buffer, in order.
                for i in 100..<200 { try client.publish("\(i)", to: "traffic.a") }
                #expect(client.statistics.droppedPublishes == 0)

                try await server.restart()
                try await waitUntil("client reconnected") { client.status == .connected }
                try await waitUntil("other reconnected") { other.status == .connected }
                #expect(client.statistics.reconnects >= 1)

                let received = try await own.wait(for: 200)
                #expect(received.map(\.string) == (0..<200).map(String.init))

                // Both clients' subscriptions are back: traffic after the restart reaches them.
                try other.publish("after", to: "traffic.b")
                try await own.wait(for: 201)
                try await waitUntil { theirs.strings.contains("after") }

                var seen: [NATSConnectionStatus] = []
                for await status in statuses {
                    seen.append(status)
                    if seen.count == 3 { break }
                }
                #expect(seen == [.connected, .reconnecting, .connected])
                await client.close()
                await other.close()
            }
        }

        @Test("requests work again after a restart (the shared inbox is resubscribed)")
        func requestAfterRestart() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let service = try await client.subscribe(to: "svc")
                let serving = Task {
                    for await request in service { try? client.respond(to: request, with: ByteBuffer(string: "ok")) }
                }
                #expect(try await client.request("1", to: "svc").string == "ok")
                try await server.restart()
                try await waitUntil { client.status == .connected && client.statistics.reconnects == 1 }
                #expect(try await client.request("2", to: "svc").string == "ok")
                serving.cancel()
                await client.close()
            }
        }

        @Test("status watchers cancelled while the status changes: no deadlock")
        func statusWatchersCancelledDuringReconnect() async throws {
            // Telling watchers of a status change resumes their tasks; cancelling a watcher's task
            // ends its stream under the task's own lock. Both used to take the client's lock in
            // opposite orders, and a node hung for good when one of its watchers was stopped during
            // a reconnect. Many watchers, cancelled from another thread while the connection drops
            // and comes back, make the two overlap.
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                for round in 0..<20 {
                    let watchers = (0..<200).map { _ in Task { for await _ in client.statusChanges() {} } }
                    try await Task.sleep(for: .milliseconds(20))
                    let cancelled = NIOLockedValueBox(false)
                    Thread.detachNewThread {
                        for watcher in watchers { watcher.cancel() }
                        cancelled.withLockedValue { $0 = true }
                    }
                    await client.dropConnection()
                    try await waitUntil("round \(round): watchers cancelled, client reconnected", timeout: .seconds(20)) {
                        cancelled.withLockedValue { $0 } && client.statistics.reconnects == round + 1 && client.status == .connected
                    }
                    for watcher in watchers { await watcher.value }
                }
                #expect(client.statistics.reconnects == 20)
                await client.close()
            }
        }

        @Test("the reconnect buffer is bounded: overflow is a typed error and counted")
        func reconnectBufferBound() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect { $0.reconnectBufferBytes = 4096 }
                await server.stop()
                try await waitUntil { client.status == .reconnecting }
                let payload = [UInt8](repeating: 7, count: 1000)
                var accepted = 0
                var refused = 0
                for _ in 0..<10 {
                    do {
                        try client.publish(payload, to: "x")
                        accepted += 1
                    } catch NATSError.reconnectBufferExceeded(let budget) {
                        #expect(budget == 4096)
                        refused += 1
                    }
                }
                #expect(accepted == 4)  // 4 × (1000 bytes + "PUB x 1000\r\n" + "\r\n") fit in 4096
                #expect(refused == 6)
                #expect(client.statistics.droppedPublishes == 6)

                try await server.start()
                try await waitUntil { client.status == .connected }
                await client.close()
            }
        }

        @Test("a frozen server (socket open, no answers) is detected by keepalive pings")
        func staleConnection() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect {
                    $0.pingInterval = .milliseconds(100)
                    $0.maxPingsOutstanding = 2
                }
                server.pause()
                defer { server.resume() }
                try await waitUntil("stale detected", timeout: .seconds(5)) { client.status == .reconnecting }
                server.resume()
                try await waitUntil("reconnected", timeout: .seconds(10)) { client.status == .connected }
                try await client.flush()
                await client.close()
            }
        }

        @Test("the server cuts off a slow consumer; the client reconnects and resubscribes")
        func serverSideSlowConsumer() async throws {
            try await NATSTestServer.with(configuration: "max_payload: 16384\nmax_pending: 65536\nwrite_deadline: \"500ms\"") { server in
                let slow = try await server.connect()
                let subscription = try await slow.subscribe(to: "flood", bufferLimit: 1_000_000)
                let collector = MessageCollector(subscription)
                let producer = try await server.connect()
                try await slow.setReading(false)
                // Publish until the server gives up on the reader: once the kernel's socket buffers are full
                // its queue for the client passes max_pending (a few MiB on loopback; bounded at 64 MiB).
                let chunk = [UInt8](repeating: 0x61, count: 16 * 1024)
                var published = 0
                while published < 4096 {
                    for _ in 0..<64 { try producer.publish(chunk, to: "flood") }
                    published += 64
                    try await producer.flush()
                    if (try await server.monitor("varz")["slow_consumers"] as? Int ?? 0) >= 1 { break }
                }
                try await waitUntil("server counted a slow consumer") {
                    (try await server.monitor("varz")["slow_consumers"] as? Int ?? 0) >= 1
                }
                try await slow.setReading(true)
                try await waitUntil("reconnected") { slow.status == .connected && slow.statistics.reconnects >= 1 }
                // The subscription was re-sent on reconnect; a round trip makes sure the server has
                // processed it before the producer, on another connection, publishes.
                try await slow.flush()
                let before = collector.messages.count
                try producer.publish("after", to: "flood")
                try await waitUntil("resubscribed") { collector.messages.count > before && collector.messages.last?.string == "after" }
                await slow.close()
                await producer.close()
            }
        }
    }
}
