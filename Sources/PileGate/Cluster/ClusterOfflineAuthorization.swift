import Foundation
import Logging
import NATS
import YKC

/// The offline authorization shared by the cluster (issues 11.4 and 13.1): a card or VIN a
/// backend decided through one node is known to every node during an outage, and the bill of a
/// session one node authorized offline is marked `offlineAuthorization` whichever node it
/// arrives through.
///
/// Two KV buckets, written by the node where it happened and watched by every node:
/// - `<clusterName>_offline_decisions`: key `card.<16 hex>` or `vin.<VIN>` (the credential with
///   `.` for `:`, KV keys allow `[-/_=.a-zA-Z0-9]`), value the decision as JSON. A node adopts
///   it through `OfflineAuthorizationCache.record(_:_:shared:)`, so the newest decision wins
///   there too (a late, older one does not replace a newer one) and the cache's bound holds.
///   Entries expire after a day, the longest window the cache keeps decisions by default.
/// - `<clusterName>_offline_serials`: key the trade serial (32 digits), value the ledger entry
///   as JSON; entries expire after 7 days (a pile sends its bill within 30 s of the session's
///   end, or after its next login), the ledger's own bound holds on every node.
/// What happens while NATS is down stays local (the node still answers its own piles).
struct ClusterOfflineAuthorization: ClusterComponent {
    let authorizer: OfflineAuthorizer
    let changes: AsyncStream<Change>
    let logger: Logger
    var name: String { "offline authorization" }
    static let decisionsTTL: Duration = .seconds(86_400)
    static let serialsTTL: Duration = .seconds(604_800)

    enum Change: Sendable {
        case decision(OfflineCredential, OfflineAuthorizationCache.Decision)
        case serial(OfflineAuthorizationLedger.Entry)
    }

    static func install(on node: ClusterNode, authorizer: OfflineAuthorizer, logger: Logger) {
        let (stream, continuation) = AsyncStream.makeStream(of: Change.self, bufferingPolicy: .bufferingNewest(10_000))
        authorizer.cache.onRecord { continuation.yield(.decision($0, $1)) }
        authorizer.ledger.onRecord { continuation.yield(.serial($0)) }
        node.add(ClusterOfflineAuthorization(authorizer: authorizer, changes: stream, logger: logger))
    }

    struct DecisionValue: Codable {
        var approved: Bool
        var decidedAt: Double
        var balanceCents: Int64
        var logicalCardNumber: String
        var pile: String
        var node: String
    }

    struct SerialValue: Codable {
        var pile: String
        var gun: Int
        var credential: String
        var reason: String
        var capCents: Int64
        var authorizedAt: Double
        var eventId: String
        var node: String
    }

    /// The KV key of a credential: `card.<hex>` or `vin.<VIN>`.
    static func key(_ credential: OfflineCredential) -> String { "\(credential.kind.rawValue).\(credential.value)" }

    /// The credential of a KV key; nil for anything `key(_:)` does not write.
    static func credential(key: String) -> OfflineCredential? {
        guard let dot = key.firstIndex(of: ".") else { return nil }
        return OfflineCredential(entry: key[..<dot] + ":" + key[key.index(after: dot)...])
    }

    func decisions(_ node: ClusterNode) async throws -> KeyValue {
        try await node.keyValue("offline_decisions", description: "pilegate offline authorization: last backend decision by card/VIN", ttl: Self.decisionsTTL)
    }

    func serials(_ node: ClusterNode) async throws -> KeyValue {
        try await node.keyValue("offline_serials", description: "pilegate offline authorization: issued trade serials", ttl: Self.serialsTTL)
    }

    func run(node: ClusterNode, client: NATSClient) async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await publish(node) }
            group.addTask { await watchDecisions(node) }
            group.addTask { await watchSerials(node) }
        }
    }

    private func publish(_ node: ClusterNode) async {
        let encoder = JSONEncoder()
        for await change in changes {
            do {
                switch change {
                case .decision(let credential, let d):
                    let value = DecisionValue(
                        approved: d.approved, decidedAt: d.decidedAt.timeIntervalSince1970, balanceCents: d.balanceCents,
                        logicalCardNumber: d.logicalCardNumber, pile: d.pile, node: node.nodeId)
                    try await decisions(node).put(Self.key(credential), String(decoding: try encoder.encode(value), as: UTF8.self))
                case .serial(let e):
                    let value = SerialValue(
                        pile: e.pile, gun: e.gun, credential: e.credential, reason: e.reason, capCents: e.capCents,
                        authorizedAt: e.authorizedAt.timeIntervalSince1970, eventId: e.eventId, node: node.nodeId)
                    try await serials(node).put(e.tradeSerial.description, String(decoding: try encoder.encode(value), as: UTF8.self))
                }
            } catch {
                logger.warning("cluster: an offline authorization change stays local", metadata: ["error": "\(error)"])
            }
        }
    }

    private func watchDecisions(_ node: ClusterNode) async {
        let decoder = JSONDecoder()
        while !Task.isCancelled {
            if let kv = try? await decisions(node), let watcher = try? await kv.watch() {
                do {
                    for try await entry in watcher where entry.operation == .put {
                        guard let credential = Self.credential(key: entry.key),
                            let v = try? decoder.decode(DecisionValue.self, from: Data(entry.value.readableBytesView)),
                            v.node != node.nodeId
                        else { continue }
                        authorizer.cache.record(
                            credential,
                            OfflineAuthorizationCache.Decision(
                                approved: v.approved, decidedAt: Date(timeIntervalSince1970: v.decidedAt), balanceCents: v.balanceCents,
                                logicalCardNumber: v.logicalCardNumber, pile: v.pile),
                            shared: false)
                    }
                } catch {}
                watcher.stop()
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private func watchSerials(_ node: ClusterNode) async {
        let decoder = JSONDecoder()
        while !Task.isCancelled {
            if let kv = try? await serials(node), let watcher = try? await kv.watch() {
                do {
                    for try await entry in watcher where entry.operation == .put {
                        guard let serial = TradeSerial(entry.key),
                            let v = try? decoder.decode(SerialValue.self, from: Data(entry.value.readableBytesView)),
                            v.node != node.nodeId
                        else { continue }
                        authorizer.ledger.record(
                            OfflineAuthorizationLedger.Entry(
                                tradeSerial: serial, pile: v.pile, gun: v.gun, credential: v.credential, reason: v.reason,
                                capCents: v.capCents, authorizedAt: Date(timeIntervalSince1970: v.authorizedAt), eventId: v.eventId),
                            done: nil, shared: false)
                    }
                } catch {}
                watcher.stop()
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
