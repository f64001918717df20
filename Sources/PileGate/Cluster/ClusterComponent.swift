import NATS

/// A piece of cluster behaviour (commands across nodes, one session per pile, shared state,
/// cross-node events) that runs while the node is in the cluster. `ClusterNode` starts each one
/// once, after the first connection to NATS, and cancels it at shutdown; the client reconnects
/// and resubscribes on its own, so a component does not restart across NATS outages.
public protocol ClusterComponent: Sendable {
    /// For logs.
    var name: String { get }
    /// Runs until its task is cancelled.
    func run(node: ClusterNode, client: NATSClient) async throws
}
