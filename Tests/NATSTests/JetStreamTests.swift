import Foundation
import NIOCore
import Testing

@testable import NATS
import NATSTestSupport

extension RealServerTests {
    @Suite("JetStream against a real nats-server", .timeLimit(.minutes(1)))
    struct JetStreamTests {
        @Test("stream create, info, update, delete; errors are typed")
        func streamManagement() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let js = client.jetStream()
                let created = try await js.createStream(StreamConfiguration(
                    name: "BILLS", subjects: ["bills.>"], duplicateWindow: .seconds(30)
                ))
                #expect(created.config.subjects == ["bills.>"])
                #expect(created.config.duplicateWindow == .seconds(30))
                #expect(created.state.messages == 0)
                // Creating the same stream again is fine; a different config under the name is not.
                _ = try await js.createStream(StreamConfiguration(name: "BILLS", subjects: ["bills.>"], duplicateWindow: .seconds(30)))
                await #expect {
                    try await js.createStream(StreamConfiguration(name: "BILLS", subjects: ["other.>"]))
                } throws: { error in
                    guard case NATSError.jetStream(let api) = error else { return false }
                    return api.errorCode == JetStreamAPIError.streamNameInUse
                }
                var config = created.config
                config.subjects = ["bills.>", "charges.>"]
                config.maxMessages = 1000
                let updated = try await js.updateStream(config)
                #expect(updated.config.subjects == ["bills.>", "charges.>"])
                #expect(updated.config.maxMessages == 1000)
                _ = try await js.publish("x", to: "charges.1")
                #expect(try await js.streamInfo("BILLS").state.messages == 1)
                try await js.deleteStream("BILLS")
                await #expect {
                    try await js.streamInfo("BILLS")
                } throws: { error in
                    guard case NATSError.jetStream(let api) = error else { return false }
                    return api.errorCode == JetStreamAPIError.streamNotFound && api.code == 404
                }
                await #expect(throws: NATSError.invalidSubject("a.b")) { try await js.streamInfo("a.b") }
                await client.close()
            }
        }

        @Test("publish gets a PubAck; a repeated Nats-Msg-Id is a duplicate; nothing captures → no responders")
        func publishAndDuplicates() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let js = client.jetStream()
                try await js.createStream(StreamConfiguration(name: "EV", subjects: ["ev.>"]))
                let first = try await js.publish("bill 1", to: "ev.bill", messageID: "trade-0001")
                #expect(first.stream == "EV" && first.sequence == 1 && !first.duplicate)
                let again = try await js.publish("bill 1", to: "ev.bill", messageID: "trade-0001")
                #expect(again.duplicate && again.sequence == 1)
                let second = try await js.publish("bill 2", to: "ev.bill", messageID: "trade-0002")
                #expect(second.sequence == 2 && !second.duplicate)
                #expect(try await js.streamInfo("EV").state.messages == 2)
                await #expect(throws: NATSError.noResponders(subject: "nowhere.x")) {
                    _ = try await js.publish("x", to: "nowhere.x")
                }
                // Conditional publish: expected last subject sequence.
                await #expect {
                    _ = try await js.publish(ByteBuffer(string: "x"), to: "ev.bill", expectedLastSubjectSequence: 1)
                } throws: { error in
                    guard case NATSError.jetStream(let api) = error else { return false }
                    return api.errorCode == JetStreamAPIError.wrongLastSequence
                }
                await client.close()
            }
        }

        @Test("durable pull consumer: create, info, fetch batches with expiry, ack; delete")
        func pullConsumer() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let js = client.jetStream()
                try await js.createStream(StreamConfiguration(name: "Q", subjects: ["q.>"]))
                for i in 1...5 { _ = try await js.publish("m\(i)", to: "q.work") }
                let info = try await js.createConsumer(stream: "Q", ConsumerConfiguration(
                    durableName: "billing", ackWait: .seconds(30), maxDeliver: 5, filterSubject: "q.>"
                ))
                #expect(info.name == "billing" && info.numPending == 5)
                #expect(info.config.ackWait == .seconds(30) && info.config.maxDeliver == 5)
                let consumer = js.pullConsumer(stream: "Q", name: "billing")

                let batch = try await consumer.fetch(batch: 3, expires: .seconds(2))
                #expect(batch.map(\.string) == ["m1", "m2", "m3"])
                #expect(batch.map(\.metadata.streamSequence) == [1, 2, 3])
                #expect(batch[0].metadata.deliveryCount == 1 && batch[0].metadata.stream == "Q")
                #expect(batch[0].metadata.consumer == "billing" && batch[2].metadata.pending == 2)
                for message in batch { try await message.ackSync() }

                // Fewer available than asked: returns with what there is when the request expires.
                let started = ContinuousClock.now
                let rest = try await consumer.fetch(batch: 10, expires: .milliseconds(500))
                #expect(rest.map(\.string) == ["m4", "m5"])
                #expect(ContinuousClock.now - started < .seconds(3))
                for message in rest { try message.ack() }
                try await client.flush()

                // Nothing left: noWait returns at once, empty.
                #expect(try await consumer.fetch(batch: 5, noWait: true).isEmpty)
                let after = try await consumer.info()
                #expect(after.numPending == 0)
                try await waitUntil { try await consumer.info().numAckPending == 0 }
                #expect(after.delivered.streamSequence == 5)

                try await js.deleteConsumer(stream: "Q", name: "billing")
                await #expect(throws: NATSError.self) { try await consumer.info() }
                await client.close()
            }
        }

        @Test("redelivery after ack wait, nak (with delay), in-progress, term, and max deliver")
        func redelivery() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let js = client.jetStream()
                try await js.createStream(StreamConfiguration(name: "R", subjects: ["r.>"]))
                try await js.createConsumer(stream: "R", ConsumerConfiguration(
                    durableName: "c", ackWait: .milliseconds(300), maxDeliver: 3
                ))
                let consumer = js.pullConsumer(stream: "R", name: "c")
                _ = try await js.publish("unacked", to: "r.1")

                // Not acked: delivered again after the ack wait, up to max deliver (3), then never again.
                var deliveries: [Int] = []
                let deadline = ContinuousClock.now + .seconds(10)
                while deliveries.count < 3 && ContinuousClock.now < deadline {
                    for message in try await consumer.fetch(batch: 1, expires: .seconds(1)) {
                        deliveries.append(message.metadata.deliveryCount)
                    }
                }
                #expect(deliveries == [1, 2, 3])
                #expect(try await consumer.fetch(batch: 1, expires: .milliseconds(800)).isEmpty)

                // nak: redelivered at once; nak with delay: not before the delay.
                _ = try await js.publish("nak me", to: "r.2")
                let first = try #require(try await consumer.fetch(batch: 1).first)
                #expect(first.string == "nak me")
                try first.nak()
                let second = try #require(try await consumer.fetch(batch: 1).first)
                #expect(second.metadata.deliveryCount == 2 && second.metadata.streamSequence == first.metadata.streamSequence)
                try second.nak(delay: .seconds(1))
                let nakAt = ContinuousClock.now
                let third = try #require(try await consumer.fetch(batch: 1, expires: .seconds(3)).first)
                #expect(ContinuousClock.now - nakAt >= .milliseconds(900))
                try third.term()

                // in progress: keeps extending the ack wait, so no redelivery while working. A consumer
                // of its own with a 2 s ack wait, told every 100 ms for 3 s: only a machine so loaded
                // that a 100 ms sleep takes 2 s lets the wait run out between two signals (a 300 ms
                // wait told every 150 ms, and a 1 s one, did run out at load averages of 20 and 40).
                try await js.createConsumer(stream: "R", ConsumerConfiguration(
                    durableName: "w", ackWait: .seconds(2), maxDeliver: 3, filterSubject: "r.3"
                ))
                let worker = js.pullConsumer(stream: "R", name: "w")
                _ = try await js.publish("slow work", to: "r.3")
                let work = try #require(try await worker.fetch(batch: 1).first)
                let working = ContinuousClock.now
                while ContinuousClock.now - working < .seconds(3) {
                    try await Task.sleep(for: .milliseconds(100))
                    try work.inProgress()
                }
                // 3 s > ack wait (2 s), but in-progress kept it ours.
                #expect(try await worker.fetch(batch: 1, expires: .milliseconds(200)).isEmpty)
                try await work.ackSync()
                #expect(try await worker.fetch(batch: 1, expires: .milliseconds(500)).isEmpty)

                // term'd message never returns.
                let info = try await consumer.info()
                #expect(info.numAckPending == 0)
                await client.close()
            }
        }

        @Test("a pull consumer keeps its place across a server restart")
        func durableAcrossRestart() async throws {
            try await NATSTestServer.with { server in
                let client = try await server.connect()
                let js = client.jetStream()
                try await js.createStream(StreamConfiguration(name: "D", subjects: ["d.>"]))
                try await js.createConsumer(stream: "D", ConsumerConfiguration(durableName: "svc", ackWait: .seconds(30)))
                for i in 1...4 { _ = try await js.publish("\(i)", to: "d.x", messageID: "id-\(i)") }
                let consumer = js.pullConsumer(stream: "D", name: "svc")
                for message in try await consumer.fetch(batch: 2) { try await message.ackSync() }
                try await server.restart()
                try await waitUntil { client.status == .connected }
                // The stream may need a moment to be back after a restart.
                var rest: [JetStreamMessage] = []
                try await waitUntil("fetch after restart") {
                    rest = (try? await consumer.fetch(batch: 2, expires: .milliseconds(500))) ?? []
                    return !rest.isEmpty
                }
                #expect(rest.map(\.string) == ["3", "4"])
                await client.close()
            }
        }
    }
}
