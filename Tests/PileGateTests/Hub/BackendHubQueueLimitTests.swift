import Foundation
import NIOCore
@testable import PileGate
import Testing

/// How many events wait for an instance's credit on this node: `hubQueueLimit` for a socket here,
/// the smaller `hubRemoteQueueLimit` for an instance of another cluster node, whose own node
/// queues them again (docs/BENCHMARKS.md, "Cluster load").
@Suite("Hub queue limits: local and remote instances")
struct BackendHubQueueLimitTests {
    @Test("an instance of another node queues at most hubRemoteQueueLimit events here; one of this node hubQueueLimit")
    func remoteQueueIsShorter() async throws {
        try await withHub(hub: {
            $0.queueLimit = 50
            $0.remoteQueueLimit = 5
        }) { _, hub in
            let remote = hub.register(
                service: "far", name: "r", lane: "", events: ["heartbeat"], maxInFlight: 1, durable: false, node: "other-node")
            let local = hub.register(service: "near", name: "l", lane: "", events: ["heartbeat"], maxInFlight: 1, durable: false)
            for n in 0..<20 {
                hub.route(
                    BackendInstance.Pending(
                        id: "e\(n)", text: ByteBuffer(string: "{}"), event: "heartbeat", pile: 1, route: RouteKey(lane: "", service: "")))
            }
            // One event takes each instance's single credit; the rest wait, up to each one's limit.
            #expect(remote.takeWaiting().map(\.id) == (1...5).map { "e\($0)" })
            #expect(local.takeWaiting().count == 19)
            hub.unregister(remote)
            hub.unregister(local)
        }
    }
}
