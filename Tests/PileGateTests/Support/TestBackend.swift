import Foundation
import HummingbirdWSClient
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A backend service instance over a real WebSocket, the way platform services connect:
/// send JSON messages, await what the gateway sends, ack events.
final class TestBackend: Sendable {
    /// A message to send: as one frame, or split into frames of at most 16 KiB.
    enum Outgoing: Sendable {
        case frame(String)
        case fragmented(String)
    }

    private let outgoing: AsyncStream<Outgoing>.Continuation
    /// Messages received, as text (parsed on demand).
    private let received: NIOLockedValueBox<[String]>
    private let closedBox: NIOLockedValueBox<Bool>
    private let task: Task<Void, Never>
    /// Ack every event automatically (off for tests of credit and ejection).
    let autoAck: NIOLockedValueBox<Bool>
    /// Seconds each automatic ack waits (a slow backend), one event after another.
    let ackDelay: NIOLockedValueBox<Double>

    private init(
        outgoing: AsyncStream<Outgoing>.Continuation, task: Task<Void, Never>, autoAck: NIOLockedValueBox<Bool>,
        ackDelay: NIOLockedValueBox<Double>, received: NIOLockedValueBox<[String]>, closed: NIOLockedValueBox<Bool>
    ) {
        self.outgoing = outgoing
        self.task = task
        self.autoAck = autoAck
        self.ackDelay = ackDelay
        self.received = received
        self.closedBox = closed
    }

    struct Timeout: Error, CustomStringConvertible {
        var what: String
        var description: String { "timed out waiting for \(what)" }
    }

    /// Connects to `/v1/events` and optionally subscribes.
    /// With `token`, the upgrade carries `Authorization: Bearer <token>`.
    static func connect(apiPort: Int, autoAck: Bool = true, ackDelay: Double = 0, token: String? = nil) async throws -> TestBackend {
        let (stream, continuation) = AsyncStream.makeStream(of: Outgoing.self)
        let box = NIOLockedValueBox<[String]>([])
        let closed = NIOLockedValueBox(false)
        let ack = NIOLockedValueBox(autoAck)
        let delay = NIOLockedValueBox(ackDelay)
        var logger = Logger(label: "test-backend")
        logger.logLevel = .critical
        var configuration = WebSocketClientConfiguration()
        if let token { configuration.additionalHeaders[.authorization] = "Bearer \(token)" }
        let client = WebSocketClient(url: "ws://127.0.0.1:\(apiPort)/v1/events", configuration: configuration, logger: logger) { inbound, outbound, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await item in stream {
                        switch item {
                        case .frame(let text): try await outbound.write(.text(text))
                        case .fragmented(let text): try await outbound.writeTextMessage(text)
                        }
                    }
                    try await outbound.close(.normalClosure, reason: nil)
                }
                for try await message in inbound.messages(maxSize: 1 << 22) {
                    guard case .text(let text) = message else { continue }
                    box.withLockedValue { $0.append(text) }
                    if ack.withLockedValue({ $0 }), let (id, isEvent, replyExpected) = Self.peek(text), isEvent, !replyExpected {
                        let d = delay.withLockedValue { $0 }
                        if d > 0 { try await Task.sleep(nanoseconds: UInt64(d * 1e9)) }
                        try await outbound.write(.text(#"{"type":"ack","id":"\#(id)"}"#))
                    }
                }
                group.cancelAll()
            }
        }
        let task = Task {
            _ = try? await client.run()
            closed.withLockedValue { $0 = true }
        }
        return TestBackend(outgoing: continuation, task: task, autoAck: ack, ackDelay: delay, received: box, closed: closed)
    }

    private static func peek(_ text: String) -> (String, Bool, Bool)? {
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any], let id = obj["id"] as? String
        else { return nil }
        return (id, obj["type"] as? String == "event", obj["replyExpected"] as? Bool == true)
    }

    var messages: [[String: Any]] {
        received.withLockedValue { $0 }.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    }
    var isClosed: Bool { closedBox.withLockedValue { $0 } }
    var events: [[String: Any]] { messages.filter { $0["type"] as? String == "event" } }

    func send(_ text: String) { outgoing.yield(.frame(text)) }

    /// Sends `text` as one message split into 16 KiB frames.
    func sendFragmented(_ text: String) { outgoing.yield(.fragmented(text)) }

    func subscribe(service: String, instance: String, lane: String = "", events: [String] = ["*"], maxInFlight: Int? = nil) async throws {
        let list = events.map { "\"\($0)\"" }.joined(separator: ",")
        let m = maxInFlight.map { ",\"maxInFlight\":\($0)" } ?? ""
        send(#"{"type":"subscribe","service":"\#(service)","instance":"\#(instance)","lane":"\#(lane)","events":[\#(list)]\#(m)}"#)
        // Generous: on a loaded machine the upgrade and the first message can take seconds.
        _ = try await waitFor("subscribed", timeout: 20) { $0["type"] as? String == "subscribed" }
    }

    /// Waits for a message matching `predicate` (already received or arriving).
    @discardableResult
    func waitFor(_ what: String, timeout: TimeInterval = 5, _ predicate: @escaping ([String: Any]) -> Bool) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let m = messages.first(where: predicate) { return m }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        if let m = messages.first(where: predicate) { return m }
        throw Timeout(what: what)
    }

    @discardableResult
    func waitForEvent(_ name: String, timeout: TimeInterval = 5, where extra: @escaping ([String: Any]) -> Bool = { _ in true }) async throws -> [String: Any] {
        try await waitFor("event \(name)", timeout: timeout) { $0["type"] as? String == "event" && $0["event"] as? String == name && extra($0) }
    }

    func close() async {
        outgoing.finish()
        task.cancel()
        _ = await task.value
    }
}
