import Foundation
import Logging
import NATS
import NIOConcurrencyHelpers
import ServiceLifecycle
import YKC

/// This node's place in a cluster (docs/CLUSTER.md): its NATS connection, its heartbeat, the
/// membership it sees, and the cluster components that run on top. Created only when `natsURL`
/// is set; without it a node works alone, exactly as before.
///
/// It runs as a service of the gateway's service group, stopped after the hub and the outbox, so
/// the `pile_offline` events of a drain still cross the cluster. NATS being unreachable never
/// stops the node serving its piles: the first connection is retried with backoff for as long as
/// it takes, and the client reconnects by itself after that.
public final class ClusterNode: Service, Sendable {
    public let nodeId: String
    public let subjects: ClusterSubjects
    /// Unix seconds; tells a restarted node with the same id from its previous incarnation.
    public let startedAt: Double
    private let options: NATSClientOptions
    /// Seconds between heartbeats; cluster components pace their own reconciliation on it.
    public let heartbeatInterval: Double
    private let logger: Logger
    private let localView: @Sendable () -> (piles: Int, api: String?)
    private let clientBox = NIOLockedValueBox<NATSClient?>(nil)
    private let membership: NIOLockedValueBox<ClusterMembership>
    /// What runs on the node's connection (`add`): each component is built with the node (it
    /// needs its subjects and client), so the node can only be handed them afterwards; all are
    /// added before the node runs.
    private let components = NIOLockedValueBox<[any ClusterComponent]>([])
    private let changeHooks = NIOLockedValueBox<[@Sendable (ClusterMembership.Change) -> Void]>([])
    private let buckets = NIOLockedValueBox<[String: KeyValue]>([:])
    private let clock = ContinuousClock()
    private let epoch: ContinuousClock.Instant

    /// `localView` reports this node's online piles and API address for its heartbeat.
    ///
    /// The NATS connection runs on NIO's shared group, apart from the gateway's loops: in a login
    /// wave or a reconnect storm the pile loops fall seconds behind, and the connection's reads,
    /// its keepalives and the heartbeats it carries must not wait for them.
    public init(
        config: GatewayConfiguration, logger: Logger,
        localView: @escaping @Sendable () -> (piles: Int, api: String?)
    ) throws(ConfigurationError) {
        guard ClusterSubjects.isToken(config.nodeId) else {
            throw ConfigurationError(
                key: "nodeId", source: "configuration",
                problem: "in cluster mode the node id must be 1–64 of A–Z a–z 0–9 - _ (it names NATS subjects), got '\(config.nodeId.prefix(64))'")
        }
        self.options = try config.natsClientOptions()
        self.nodeId = config.nodeId
        self.subjects = ClusterSubjects(cluster: config.clusterName)
        self.heartbeatInterval = config.clusterHeartbeatInterval
        self.membership = NIOLockedValueBox(ClusterMembership(timeout: config.clusterNodeTimeout))
        self.startedAt = Date().timeIntervalSince1970
        self.epoch = clock.now
        self.logger = logger
        self.localView = localView
    }

    /// The NATS client once the first connection succeeded (nil before, and after shutdown).
    public var client: NATSClient? { clientBox.withLockedValue { $0 } }

    /// The cluster's KV bucket `<clusterName>_<name>`, created on first use. Throws
    /// `ClusterUnavailable` while NATS is not connected.
    public func keyValue(_ name: String, description: String, history: Int = 1, ttl: Duration? = nil) async throws -> KeyValue {
        guard let client, client.status == .connected else {
            throw ClusterUnavailable(reason: "NATS is \(self.client.map { "\($0.status)" } ?? "not connected yet")")
        }
        let bucket = subjects.resource(name)
        if let known = buckets.withLockedValue({ $0[bucket] }) { return known }
        do {
            let kv = try await client.jetStream().createKeyValue(
                KeyValueConfiguration(bucket: bucket, description: description, history: history, ttl: ttl))
            buckets.withLockedValue { $0[bucket] = kv }
            return kv
        } catch {
            throw ClusterUnavailable(reason: "\(error)")
        }
    }

    /// Adds a component; call before the gateway starts.
    public func add(_ component: any ClusterComponent) {
        components.withLockedValue { $0.append(component) }
    }

    /// Calls `hook` on every membership change (from the node's own task, one at a time).
    public func onMembershipChange(_ hook: @escaping @Sendable (ClusterMembership.Change) -> Void) {
        changeHooks.withLockedValue { $0.append(hook) }
    }

    /// The live members (this node included once its own heartbeat came back), by node id.
    public var members: [ClusterMembership.Member] {
        membership.withLockedValue { $0.members.values.sorted { $0.heartbeat.node < $1.heartbeat.node } }
    }

    /// Whether `node` is a live member.
    public func isAlive(_ node: String) -> Bool { membership.withLockedValue { $0.isAlive(node) } }

    public func run() async {
        await cancelWhenGracefulShutdown { await self.runConnected() }
        await leave()
    }

    /// Seconds on the node's monotonic clock (since it was built): what membership times are in,
    /// and what the pile directory times silences and tombstones with.
    var now: Double {
        let d = clock.now - epoch
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    private func runConnected() async {
        guard let client = await connectRetrying() else { return }
        clientBox.withLockedValue { $0 = client }
        logger.info("cluster: connected to NATS", metadata: ["server": "\(client.serverInfo?.serverName ?? "?")", "cluster": "\(subjects.cluster)"])
        let parts = components.withLockedValue { $0 }
        await withDiscardingTaskGroup { group in
            group.addTask { await self.watchMembers(client) }
            group.addTask { await self.announce(client) }
            for part in parts {
                group.addTask {
                    do { try await part.run(node: self, client: client) } catch where !Task.isCancelled {
                        self.logger.error("cluster component ended", metadata: ["component": "\(part.name)", "error": "\(error)"])
                    } catch {}
                }
            }
        }
    }

    /// The first connection, retried with capped exponential backoff until it succeeds or the
    /// node shuts down (nil). One warning per failure reason, not one per attempt.
    private func connectRetrying() async -> NATSClient? {
        var attempt = 0
        var lastProblem = ""
        while !Task.isCancelled {
            do {
                return try await NATSClient.connect(options, logger: logger)
            } catch {
                let problem = "\(error)"
                if problem != lastProblem {
                    logger.warning("cluster: NATS unreachable, serving local piles and retrying", metadata: ["error": "\(problem)"])
                    lastProblem = problem
                }
            }
            try? await Task.sleep(for: options.reconnect.delay(attempt: attempt))
            attempt += 1
        }
        return nil
    }

    private func heartbeat(leaving: Bool) -> ClusterHeartbeat {
        let view = localView()
        return ClusterHeartbeat(
            node: nodeId, piles: view.piles, api: view.api, startedAt: startedAt, leaving: leaving, directoryChanges: true)
    }

    /// Publishes the heartbeat every interval and expires silent members.
    private func announce(_ client: NATSClient) async {
        let encoder = JSONEncoder()
        while !Task.isCancelled {
            if let data = try? encoder.encode(heartbeat(leaving: false)) {
                try? client.publish(Array(data), to: subjects.heartbeat(node: nodeId))
            }
            let changes = membership.withLockedValue { $0.expire(at: now) }
            for change in changes { report(change) }
            try? await Task.sleep(for: .milliseconds(Int(heartbeatInterval * 1000)))
        }
    }

    private func watchMembers(_ client: NATSClient) async {
        guard let subscription = try? await client.subscribe(to: subjects.allHeartbeats) else {
            logger.error("cluster: cannot subscribe to heartbeats")
            return
        }
        let decoder = JSONDecoder()
        for await message in subscription {
            guard let beat = try? decoder.decode(ClusterHeartbeat.self, from: Data(message.bytes)),
                ClusterSubjects.isToken(beat.node)
            else { continue }
            let at = now
            if let change = membership.withLockedValue({ $0.record(beat, at: at) }) { report(change) }
        }
    }

    private func report(_ change: ClusterMembership.Change) {
        if case .joined(let node) = change, node == nodeId {
        } else {
            logger.notice("cluster membership", metadata: ["change": "\(change)"])
        }
        for hook in changeHooks.withLockedValue({ $0 }) { hook(change) }
    }

    /// Tells the others this node is leaving, then closes the connection.
    private func leave() async {
        guard let client = clientBox.withLockedValue({ $0 }) else { return }
        if let data = try? JSONEncoder().encode(heartbeat(leaving: true)) {
            try? client.publish(Array(data), to: subjects.heartbeat(node: nodeId))
            try? await client.flush(timeout: .seconds(1))
        }
        await client.close()
        clientBox.withLockedValue { $0 = nil }
    }

    /// Prometheus: the members this node sees, their piles, and the pile directory's size
    /// (docs/CLUSTER.md, "Operating it"; the NATS state is `ClusterEventStream`'s).
    func collectMetrics(_ w: MetricsWriter, directory: ClusterPileDirectory?) {
        let members = self.members
        w.gauge("pilegate_cluster_nodes", [], Double(members.count))
        for m in members { w.gauge("pilegate_cluster_node_piles", [("node", m.heartbeat.node)], Double(m.heartbeat.piles)) }
        if let directory { w.gauge("pilegate_cluster_directory_entries", [], Double(directory.count)) }
    }

    /// `/v1/stats` → `cluster`: this node, the NATS connection, and the members.
    public func statsJSON() -> JSONValue {
        let client = self.client
        let at = now
        let nodes: [JSONValue] = members.map { member in
            var o: [String: JSONValue] = [
                "node": .string(member.heartbeat.node), "piles": .number(Double(member.heartbeat.piles)),
                "lastSeenSeconds": .number((at - member.lastSeen) * 1000 .rounded() / 1000),
            ]
            if let api = member.heartbeat.api { o["api"] = .string(api) }
            return .object(o)
        }
        var o: [String: JSONValue] = [
            "node": .string(nodeId), "name": .string(subjects.cluster), "nodes": .array(nodes),
            "nats": .string(client.map { "\($0.status)" } ?? "connecting"),
        ]
        if let client {
            let s = client.statistics
            o["natsReconnects"] = .number(Double(s.reconnects))
            o["natsDroppedPublishes"] = .number(Double(s.droppedPublishes))
            if let server = client.serverInfo?.serverName { o["natsServer"] = .string(server) }
        }
        return .object(o)
    }
}
