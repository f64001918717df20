import Foundation
import Logging
import NATS
import YKC

/// Provisioned piles shared by the cluster (issue 11, shared state), for the `registry` login
/// policy: a pile provisioned (`PUT /v1/piles/{id}`) or removed on any node is known or unknown
/// on every node.
///
/// KV bucket `<clusterName>_provisioned`, one key per pile id. Every node watches it and keeps its
/// registry in step; the first catch-up (every provisioned pile of the fleet) is written in
/// batches of up to 1,000 piles per transaction. A change made while NATS is down stays local
/// and is logged.
struct ClusterProvisionedPiles: ClusterComponent {
    let registry: PileRegistry
    let changes: AsyncStream<PileRegistry.ProvisioningChange>
    let logger: Logger
    var name: String { "provisioned piles" }
    static let batch = 1_000

    static func install(on node: ClusterNode, registry: PileRegistry, logger: Logger) {
        let (stream, continuation) = AsyncStream.makeStream(
            of: PileRegistry.ProvisioningChange.self, bufferingPolicy: .bufferingNewest(100_000))
        registry.onProvisioningChange { continuation.yield($0) }
        node.add(ClusterProvisionedPiles(registry: registry, changes: stream, logger: logger))
    }

    func bucket(_ node: ClusterNode) async throws -> KeyValue {
        try await node.keyValue("provisioned", description: "pilegate provisioned piles")
    }

    func run(node: ClusterNode, client: NATSClient) async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await publish(node) }
            group.addTask { await watch(node) }
        }
    }

    private func publish(_ node: ClusterNode) async {
        for await change in changes {
            do {
                let kv = try await bucket(node)
                switch change {
                case .provisioned(let id): try await kv.put(id.description, node.nodeId)
                case .removed(let id): try await kv.delete(id.description)
                }
            } catch {
                logger.warning("cluster: a provisioning change stays local", metadata: ["change": "\(change)", "error": "\(error)"])
            }
        }
    }

    private func watch(_ node: ClusterNode) async {
        while !Task.isCancelled {
            if let kv = try? await bucket(node), let watcher = try? await kv.watch() {
                var pending: [PileID] = []
                do {
                    for try await entry in watcher {
                        guard let id = PileID(input: entry.key) else { continue }
                        if entry.operation == .put {
                            pending.append(id)
                            // Catching up: gather a batch; live (delta 0): apply at once.
                            if entry.delta == 0 || pending.count >= Self.batch {
                                try await registry.provision(pending)
                                pending.removeAll(keepingCapacity: true)
                            }
                        } else {
                            if !pending.isEmpty {
                                try await registry.provision(pending)
                                pending.removeAll(keepingCapacity: true)
                            }
                            _ = try await registry.remove(id, announce: false)
                        }
                    }
                } catch {
                    logger.debug("cluster provisioned piles: watch ended", metadata: ["error": "\(error)"])
                }
                if !pending.isEmpty { try? await registry.provision(pending) }
                watcher.stop()
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
