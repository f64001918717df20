import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
@testable import PileGate
import Testing
import YKC

/// `clusterPublishInFlight`: in cluster mode at most that many must-deliver events wait for the
/// stream's acknowledgement; the next are committed to the local outbox at once, so under more
/// bills than the stream keeps up with a pile's 0x40 does not wait out the publish timeout, and a
/// bill is not published, committed and published again.
@Suite("Outbox: must-deliver events beyond the relay's in-flight bound are committed locally at once", .timeLimit(.minutes(1)))
struct OutboxRelayInFlightTests {
    /// A relay that holds every store until released, as a slow stream would.
    final class HeldRelay: OutboxRelay, @unchecked Sendable {
        private let waiting = NIOLockedValueBox<[CheckedContinuation<Bool, any Error>]>([])
        var isAvailable: Bool { true }
        var held: Int { waiting.withLockedValue { $0.count } }
        func store(_ event: OutboxEvent) async throws -> Bool {
            try await withCheckedThrowingContinuation { c in waiting.withLockedValue { $0.append(c) } }
        }
        func release() {
            for c in waiting.withLockedValue({ w in defer { w = [] }; return w }) { c.resume(returning: true) }
        }
        func acked(id: String, service: String) {}
        func summary() async -> JSONValue? { nil }
    }

    @Test("with the bound at 2, the 3rd to 5th bills are committed locally while the first 2 wait for the stream")
    func spillsBeyondTheBound() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-inflight-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var settings = Outbox.Settings()
        settings.relayInFlight = 2
        let outbox = try Outbox(directory: directory, settings: settings, logger: Logger(label: "test"))
        let relay = HeldRelay()
        outbox.relay(via: relay)
        outbox.start { _, _ in false }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let pile = try #require(PileID("32010600000777"))
        let futures = (1...5).map { n -> EventLoopFuture<Outbox.AppendResult> in
            let promise = loop.makePromise(of: Outbox.AppendResult.self)
            let serial = TradeSerial("32010600000777" + "01" + "241201133000" + String(format: "%04d", n))
            outbox.append(
                OutboxEvent(
                    id: "n1-t-\(n)", event: "transaction_record", code: 0x3B, pile: pile, gun: 1, lane: "", tradeSerial: serial,
                    receivedAt: Date(), payload: ByteBuffer(string: #"{"event":"transaction_record","n":\#(n)}"#)),
                promise: promise)
            // One at a time, so which ones the bound lets through is certain.
            return promise.futureResult
        }
        // The first two wait in the relay; the other three are committed here without waiting for it.
        // Waited for with a deadline: `EventLoopFuture.get()` does not see the suite's time limit, so
        // without the bound this would hang instead of failing.
        let spilledDone = NIOLockedValueBox(0)
        for f in futures[2...] { f.whenComplete { _ in spilledDone.withLockedValue { $0 += 1 } } }
        let spillDeadline = ContinuousClock.now + .seconds(10)
        while spilledDone.withLockedValue({ $0 }) < 3, ContinuousClock.now < spillDeadline { try await Task.sleep(for: .milliseconds(10)) }
        try #require(spilledDone.withLockedValue { $0 } == 3, "bills beyond the bound waited for the relay")
        for f in futures[2...] {
            guard case .stored = try await f.get() else { Issue.record("a spilled bill was not stored locally"); return }
        }
        let early = NIOLockedValueBox(0)
        for f in futures[..<2] { f.whenComplete { _ in early.withLockedValue { $0 += 1 } } }
        try await Task.sleep(for: .milliseconds(100))
        #expect(early.withLockedValue { $0 } == 0, "a bill within the bound completed before the stream answered")
        let spilled = try await outbox.summary().counters
        #expect(spilled.relaySpills == 3 && spilled.relayFallbacks == 0 && spilled.eventsStored == 3)
        // The stream answers: the two waiting bills complete as relayed, and the three committed
        // here are forwarded to it afterwards.
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            relay.release()
            if try await outbox.summary().counters.forwarded == 3 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        for f in futures[..<2] { #expect(try await f.get() == .stored(seq: 0)) }
        let after = try await outbox.summary().counters
        #expect(after.relayed == 2 && after.forwarded == 3 && after.relaySpills == 3)
        await outbox.stop()
    }
}
