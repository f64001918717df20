import NATS
import NIOConcurrencyHelpers
import Testing

/// Waits until `condition` holds, polling every 10 ms, or fails after `timeout`.
func waitUntil(
    _ description: String = "condition", timeout: Duration = .seconds(10), _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    throw WaitTimeout(description: description)
}

struct WaitTimeout: Error, CustomStringConvertible {
    let description: String
}

/// Reads a subscription in a task of its own and keeps what arrives, so tests wait for a count with a
/// bounded timeout instead of cancelling an iteration (which would end the subscription).
final class MessageCollector: Sendable {
    private let box = NIOLockedValueBox<[NATSMessage]>([])
    private let task: Task<Void, Never>

    init(_ subscription: NATSSubscription) {
        let box = self.box
        task = Task {
            for await message in subscription { box.withLockedValue { $0.append(message) } }
        }
    }

    var messages: [NATSMessage] { box.withLockedValue { $0 } }
    var strings: [String] { messages.map(\.string) }

    /// Waits until at least `count` messages arrived; returns them.
    @discardableResult
    func wait(for count: Int, timeout: Duration = .seconds(10)) async throws -> [NATSMessage] {
        try await waitUntil("\(count) messages (have \(messages.count))", timeout: timeout) { messages.count >= count }
        return messages
    }

    /// Waits for the subscription to end.
    func finished() async { await task.value }
}

/// The suites that start a real nats-server, run one test at a time: each test is short, and starting
/// dozens of servers at once would take the CPU from the rest of the suite on a small machine.
@Suite("Against a real nats-server", .serialized)
enum RealServerTests {}
