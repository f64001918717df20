import Foundation
import Logging
import NATS
import NIOCore
import YKC

/// Lane rules shared by the cluster (issue 11, shared state): one JetStream KV bucket
/// `<clusterName>_lanes`, key `rules`, holding `{"version":N,"updatedAt":T,"rules":[…]}`.
///
/// A `PUT /v1/lanes` on any node commits here first with a compare-and-set on the key's
/// revision (`commit`), so versions count up cluster-wide and two concurrent edits cannot both
/// win; every node watches the key and adopts each new list within a second (`Watcher`), and
/// re-reads it every few seconds as well, so a missed change (a watch lost in a NATS restart)
/// is caught up. Each node keeps a copy in its own SQLite, so it starts with the rules last
/// agreed even while NATS is down; a change while NATS is down is refused (503), because it
/// would apply to one node only.
public final class ClusterLaneRules: LaneRuleSharing {
    static let key = "rules"
    /// Values kept in the bucket's history, for operators reading who changed what.
    static let history = 16
    let node: ClusterNode
    /// A compare-and-set that loses to a concurrent change is retried this often (without
    /// `ifVersion`; with it, the loss is a version conflict).
    static let maxAttempts = 8

    public init(node: ClusterNode) {
        self.node = node
    }

    func keyValue() async throws -> KeyValue {
        do {
            return try await node.keyValue("lanes", description: "pilegate lane rules", history: Self.history)
        } catch let error as ClusterUnavailable {
            throw LaneRuleSharingUnavailable(reason: error.reason)
        }
    }

    /// The stored form: the version and time beside the rules' own JSON text.
    static func encode(rules: String, version: Int, updatedAt: Date) -> String {
        "{\"version\":\(version),\"updatedAt\":\(updatedAt.timeIntervalSince1970),\"rules\":\(rules)}"
    }

    static func decode(_ text: String) -> (rules: String, version: Int, updatedAt: Date)? {
        guard let json = try? JSONValue.parse(text), let version = json["version"]?.intValue,
            let rules = json["rules"], rules.arrayValue != nil
        else { return nil }
        let at = json["updatedAt"]?.doubleValue.map { Date(timeIntervalSince1970: $0) } ?? Date()
        return (rules.description, version, at)
    }

    public func commit(rules: String, updatedAt: Date, ifVersion: Int?) async throws -> Int {
        let kv = try await keyValue()
        for _ in 0..<Self.maxAttempts {
            let entry: KeyValueEntry?
            do { entry = try await kv.get(Self.key) } catch { throw LaneRuleSharingUnavailable(reason: "\(error)") }
            let live = entry.flatMap { $0.operation == .put ? Self.decode($0.string) : nil }
            let stored = live?.version ?? 0
            if let ifVersion, ifVersion != stored { throw LaneRuleVersionConflict(expected: ifVersion, current: stored) }
            let value = Self.encode(rules: rules, version: stored + 1, updatedAt: updatedAt)
            do {
                if let entry {
                    try await kv.update(Self.key, value, revision: entry.revision)
                } else {
                    try await kv.create(Self.key, value)
                }
                return stored + 1
            } catch let error as KeyValueError {
                switch error {
                case .wrongLastRevision, .keyExists:
                    // Somebody else committed in between: their list is the new base.
                    if let ifVersion { throw LaneRuleVersionConflict(expected: ifVersion, current: stored + 1) }
                    continue
                default: throw LaneRuleSharingUnavailable(reason: "\(error)")
                }
            } catch let error as LaneRuleVersionConflict {
                throw error
            } catch {
                throw LaneRuleSharingUnavailable(reason: "\(error)")
            }
        }
        throw LaneRuleSharingUnavailable(reason: "\(Self.maxAttempts) concurrent changes in a row")
    }

    /// The component that keeps `book` on the cluster's list.
    public func watcher(for book: LaneRuleBook, logger: Logger) -> some ClusterComponent {
        Watcher(shared: self, book: book, logger: logger)
    }

    struct Watcher: ClusterComponent {
        let shared: ClusterLaneRules
        let book: LaneRuleBook
        let logger: Logger
        var name: String { "lane rules" }

        func run(node: ClusterNode, client: NATSClient) async throws {
            await withDiscardingTaskGroup { group in
                group.addTask { await watchLoop() }
                group.addTask {
                    while !Task.isCancelled {
                        await reconcile()
                        // Re-read every 2.5 heartbeats (5 s at the default 2 s) besides the watch.
                        try? await Task.sleep(for: .milliseconds(Int(node.heartbeatInterval * 2_500)))
                    }
                }
            }
        }

        /// Reads the key once: adopts the cluster's list, or seeds an empty bucket with this
        /// node's own rules (the first node of a new cluster keeps the rules it had).
        func reconcile() async {
            guard let kv = try? await shared.keyValue() else { return }
            do {
                let entry = try await kv.get(ClusterLaneRules.key)
                if let entry, entry.operation == .put, let value = ClusterLaneRules.decode(entry.string) {
                    await book.adopt(rules: value.rules, version: value.version, updatedAt: value.updatedAt)
                } else if entry == nil, book.version > 0 {
                    let seed = ClusterLaneRules.encode(rules: book.storedText, version: book.version, updatedAt: book.updatedAt ?? Date())
                    if (try? await kv.create(ClusterLaneRules.key, seed)) != nil {
                        logger.notice("cluster lane rules seeded from this node", metadata: ["version": "\(book.version)"])
                    }
                }
            } catch {
                logger.debug("cluster lane rules: read failed", metadata: ["error": "\(error)"])
            }
        }

        func watchLoop() async {
            while !Task.isCancelled {
                if let kv = try? await shared.keyValue(), let watcher = try? await kv.watch(ClusterLaneRules.key) {
                    do {
                        for try await entry in watcher where entry.operation == .put {
                            if let value = ClusterLaneRules.decode(entry.string) {
                                await book.adopt(rules: value.rules, version: value.version, updatedAt: value.updatedAt)
                            }
                        }
                    } catch {}
                    watcher.stop()
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}
