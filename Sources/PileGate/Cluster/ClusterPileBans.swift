import Foundation
import Logging
import NATS

/// Flapping bans by pile id shared by the cluster (issue 11, shared state): a pile that flaps
/// is banned on every node, so the load balancer moving it to another node does not reset its
/// count. Bans by source address stay per node (an address is seen through one path).
///
/// The node that bans a pile (or where an operator lifts a ban) writes it to the KV bucket
/// `<clusterName>_bans` (key: the pile id, value: `{"until":T,"since":T,"connects":N,"node":ID}`);
/// every node watches the bucket and applies what the others decided. The bucket forgets entries
/// after 7 days, the longest ban `flapBanDuration` allows. Changes made while NATS is down stay
/// local (a ban still protects this node).
struct ClusterPileBans: ClusterComponent {
    let admission: AdmissionControl
    let changes: AsyncStream<PileBanChange>
    let logger: Logger
    var name: String { "pile bans" }
    static let bucketTTL: Duration = .seconds(604_800)

    /// Adds the component to `node`, listening to `admission` from now on.
    static func install(on node: ClusterNode, admission: AdmissionControl, logger: Logger) {
        let (stream, continuation) = AsyncStream.makeStream(of: PileBanChange.self, bufferingPolicy: .bufferingNewest(10_000))
        admission.onPileBanChange { continuation.yield($0) }
        node.add(ClusterPileBans(admission: admission, changes: stream, logger: logger))
    }

    struct Value: Codable {
        var until: Double
        var since: Double
        var connects: Int
        var node: String
    }

    func bucket(_ node: ClusterNode) async throws -> KeyValue {
        try await node.keyValue("bans", description: "pilegate flapping bans by pile id", ttl: Self.bucketTTL)
    }

    func run(node: ClusterNode, client: NATSClient) async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await publish(node) }
            group.addTask { await watch(node) }
        }
    }

    private func publish(_ node: ClusterNode) async {
        let encoder = JSONEncoder()
        for await change in changes {
            do {
                let kv = try await bucket(node)
                switch change {
                case .banned(let pile, let until, let since, let connects):
                    let value = Value(
                        until: until.timeIntervalSince1970, since: since.timeIntervalSince1970, connects: connects,
                        node: node.nodeId)
                    try await kv.put(pile, String(decoding: try encoder.encode(value), as: UTF8.self))
                case .lifted(let pile):
                    try await kv.delete(pile)
                }
            } catch {
                logger.warning("cluster: a pile ban change stays local", metadata: ["change": "\(change)", "error": "\(error)"])
            }
        }
    }

    private func watch(_ node: ClusterNode) async {
        let decoder = JSONDecoder()
        while !Task.isCancelled {
            if let kv = try? await bucket(node), let watcher = try? await kv.watch() {
                do {
                    for try await entry in watcher {
                        switch entry.operation {
                        case .put:
                            guard let value = try? decoder.decode(Value.self, from: Data(entry.value.readableBytesView)),
                                value.node != node.nodeId
                            else { continue }
                            admission.imposePileBan(
                                pile: entry.key, until: Date(timeIntervalSince1970: value.until),
                                since: Date(timeIntervalSince1970: value.since), connects: value.connects)
                        default:
                            admission.liftPileBan(pile: entry.key)
                        }
                    }
                } catch {}
                watcher.stop()
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
