import Foundation
import Logging
import NATS
import NIOCore
import YKC

/// The billing-model cache shared by the cluster (issue 11, shared state): the last model seen
/// for each pile, so a pile that reconnects to another node during a backend outage is still
/// answered with its own model (0x05/0x09 fallback, `BackendHub.localAnswer`).
///
/// Every model a node learns (a backend's 0x0A reply, an accepted 0x58 push) is written to the KV
/// bucket `<clusterName>_models` under the pile id, as its 0x0A body; every node watches the
/// bucket and keeps the models in memory and in its SQLite, written in batches (a joining node
/// catches up on the fleet's models in transactions of up to 1,000). Memory: about 200 bytes per
/// pile with a model, on every node.
struct ClusterBillingModels: ClusterComponent {
    let cache: BillingModelCache
    let changes: AsyncStream<BillingModelReply>
    let logger: Logger
    var name: String { "billing models" }
    static let batch = 1_000

    static func install(on node: ClusterNode, cache: BillingModelCache, logger: Logger) {
        let (stream, continuation) = AsyncStream.makeStream(of: BillingModelReply.self, bufferingPolicy: .bufferingNewest(100_000))
        cache.onStore { continuation.yield($0) }
        node.add(ClusterBillingModels(cache: cache, changes: stream, logger: logger))
    }

    func bucket(_ node: ClusterNode) async throws -> KeyValue {
        try await node.keyValue("models", description: "pilegate billing models by pile (0x0A bodies)")
    }

    func run(node: ClusterNode, client: NATSClient) async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await publish(node) }
            group.addTask { await watch(node) }
        }
    }

    private func publish(_ node: ClusterNode) async {
        for await model in changes {
            do {
                try await bucket(node).put(model.pileId.description, BillingModelCache.body(of: model))
            } catch {
                logger.debug("cluster: a billing model stays local", metadata: ["pile": "\(model.pileId)", "error": "\(error)"])
            }
        }
    }

    private func watch(_ node: ClusterNode) async {
        while !Task.isCancelled {
            if let kv = try? await bucket(node), let watcher = try? await kv.watch() {
                var pending: [BillingModelReply] = []
                do {
                    for try await entry in watcher where entry.operation == .put {
                        var body = entry.value
                        guard let model = try? BillingModelReply(decoding: &body), model.pileId.description == entry.key
                        else { continue }
                        pending.append(model)
                        if entry.delta == 0 || pending.count >= Self.batch {
                            await cache.adopt(pending)
                            pending.removeAll(keepingCapacity: true)
                        }
                    }
                } catch {}
                if !pending.isEmpty { await cache.adopt(pending) }
                watcher.stop()
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
