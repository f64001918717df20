import Foundation
import YKC

/// Where the outbox sends must-deliver events first when the node is in a cluster: the cluster's
/// JetStream stream (`ClusterEventStream`, docs/CLUSTER.md "Nothing acknowledged is lost").
///
/// With a relay the outbox is the fallback, not the store of record: an event goes to the relay
/// and its promise (the pile's 0x40) completes on the relay's acknowledgement; only when the relay
/// is unavailable or fails is the event committed to SQLite as before, and the outbox then
/// forwards it to the relay when the relay is back (the relay deduplicates, so forwarding again is
/// safe). Delivery to backends is the relay's: the outbox hands nothing to local instances itself,
/// or a backend would get an event once from SQLite and once more from the stream.
protocol OutboxRelay: AnyObject, Sendable {
    /// Whether `store` is worth trying now (connected, stream ready). When false the outbox
    /// commits to SQLite at once instead of waiting for a publish that cannot succeed.
    var isAvailable: Bool { get }
    /// Stores `event` durably in the relay; true when stored, false when the relay already had
    /// it (the same bill re-sent, or forwarded again). Throws when it cannot say (then the event
    /// goes to SQLite).
    func store(_ event: OutboxEvent) async throws -> Bool
    /// A local backend instance of `service` acked event `id` (the hub's ack).
    func acked(id: String, service: String)
    /// The relay's state for `/v1/outbox` (stream, consumers, counters), nil when unknown.
    func summary() async -> JSONValue?
}
