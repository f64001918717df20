import NIOCore
import NIOWebSocket

/// Where a backend instance's write rounds go: its own WebSocket, or (for an instance held by
/// another node of a cluster) a NATS publish to that node (`ClusterEventRelay`). A round runs on
/// `eventLoop`, one at a time per instance, so events leave in the order they became ready: that
/// is what keeps a pile's events in order, here and across nodes.
struct BackendInstanceOutput: Sendable {
    let eventLoop: any EventLoop
    /// Writes one round of ready events (already in flight in the instance's credit).
    let write: @Sendable ([BackendInstance.Pending]) -> Void

    /// Every event as one WebSocket text frame, one flush per round.
    static func socket(_ channel: any Channel) -> BackendInstanceOutput {
        BackendInstanceOutput(eventLoop: channel.eventLoop) { batch in
            for p in batch {
                channel.write(WebSocketFrame(fin: true, opcode: .text, data: p.text), promise: nil)
            }
            channel.flush()
        }
    }
}
