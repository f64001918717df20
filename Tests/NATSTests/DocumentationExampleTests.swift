import Foundation
import NIOCore
import Testing

@testable import NATS
import NATSTestSupport

/// docs/NATS-CLIENT.md's "API in a page", run against a test server (auth and TLS lines are covered by
/// NATSSecurityTests), so the documented calls keep compiling and working.
extension RealServerTests {
    @Suite("Documentation example", .timeLimit(.minutes(1)))
    struct DocumentationExampleTests {
        @Test("the documented API runs end to end")
        func documentedAPI() async throws {
            try await NATSTestServer.with { server in
                let options = try NATSClientOptions(url: server.url)
                let client = try await NATSClient.connect(options)

                let echo = try await client.subscribe(to: "svc.echo")
                let responder = Task { for await request in echo { try? client.respond(to: request, with: request.payload) } }

                let events = try await client.subscribe(to: "pile.*.heartbeat", queue: "backends")
                let seen = MessageCollector(events)
                let acks = try await client.subscribe(to: "node.a.acks") { message in print(message.subject) }
                defer { acks.unsubscribe() }
                try client.publish("hello", to: "pile.32010200000001.heartbeat")
                try client.publish(ByteBuffer(string: "x"), to: "a.b", headers: ["Nats-Msg-Id": "1"])
                #expect(try await seen.wait(for: 1).first?.string == "hello")

                let answer = try await client.request("ping", to: "svc.echo", timeout: .seconds(2))
                #expect(answer.string == "ping")

                let js = client.jetStream()
                try await js.createStream(StreamConfiguration(name: "BILLS", subjects: ["bills.>"], duplicateWindow: .seconds(600)))
                let ack = try await js.publish(ByteBuffer(string: "{}"), to: "bills.node-a", messageID: "trade-serial-0001")
                #expect(ack.sequence == 1)
                try await js.createConsumer(stream: "BILLS", ConsumerConfiguration(durableName: "billing", ackWait: .seconds(30), maxDeliver: 10))
                let fetched = try await js.pullConsumer(stream: "BILLS", name: "billing").fetch(batch: 100, expires: .seconds(1))
                #expect(fetched.count == 1)
                for message in fetched { try message.ack() }

                let kv = try await js.createKeyValue(KeyValueConfiguration(bucket: "lanes", history: 5))
                let revision = try await kv.put("rule.gold", "{}")
                try await kv.update("rule.gold", "{\"v\":2}", revision: revision)
                for try await entry in try await kv.watch("rule.>") {
                    #expect(entry.key == "rule.gold" && entry.revision == revision + 1 && entry.operation == .put)
                    break
                }
                responder.cancel()
                await client.close()
            }
        }
    }
}
