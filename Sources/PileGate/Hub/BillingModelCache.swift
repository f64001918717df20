import Foundation
import GRDB
import NIOConcurrencyHelpers
import NIOCore
import YKC

/// The last billing model the gateway saw for each pile (a backend's 0x0A reply or a 0x58 push),
/// kept in SQLite, so 0x05/0x09 can be answered through a backend outage and piles keep charging.
/// Reads come from memory; writes go through to SQLite off the pile's loop.
final class BillingModelCache: Sendable {
    private let database: DatabasePool
    private let models = NIOLockedValueBox<[PileID: BillingModelReply]>([:])
    /// Told of every model this node learns from its own piles and backends (cluster mode shares them).
    private let hooks = NIOLockedValueBox<[@Sendable (BillingModelReply) -> Void]>([])

    init(database: DatabasePool) throws {
        self.database = database
        try database.write { db in
            try db.execute(
                sql: "CREATE TABLE IF NOT EXISTS billing_models (pile TEXT PRIMARY KEY NOT NULL, body BLOB NOT NULL, updatedAt REAL NOT NULL)")
        }
        let rows = try database.read { db in try Row.fetchAll(db, sql: "SELECT pile, body FROM billing_models") }
        var loaded: [PileID: BillingModelReply] = [:]
        for row in rows {
            guard let id = PileID(row["pile"] as String), let data = row["body"] as Data? else { continue }
            var buffer = ByteBuffer(bytes: data)
            if let m = try? BillingModelReply(decoding: &buffer) { loaded[id] = m }
        }
        models.withLockedValue { $0 = loaded }
    }

    func model(for pile: PileID) -> BillingModelReply? { models.withLockedValue { $0[pile] } }

    /// Calls `hook` after every model stored from this node's own traffic (not for `adopt`).
    func onStore(_ hook: @escaping @Sendable (BillingModelReply) -> Void) {
        hooks.withLockedValue { $0.append(hook) }
    }

    /// The 0x0A body of a model: its stored and shared form.
    static func body(of model: BillingModelReply) -> ByteBuffer {
        var body = ByteBuffer()
        model.encode(into: &body)
        return body
    }

    /// Keeps models learned elsewhere (other nodes of the cluster), in memory and in one SQLite
    /// transaction, skipping those already held as they are; returns how many were new or changed.
    @discardableResult
    func adopt(_ incoming: [BillingModelReply]) async -> Int {
        let changed = models.withLockedValue { held in
            incoming.filter { m in held[m.pileId].map { Self.body(of: $0) != Self.body(of: m) } ?? true }
        }
        guard !changed.isEmpty else { return 0 }
        models.withLockedValue { held in for m in changed { held[m.pileId] = m } }
        let now = Date().timeIntervalSince1970
        let rows = changed.map { ($0.pileId.description, Data(Self.body(of: $0).readableBytesView)) }
        try? await database.write { db in
            let statement = try db.cachedStatement(
                sql: "INSERT INTO billing_models (pile, body, updatedAt) VALUES (?, ?, ?) ON CONFLICT(pile) DO UPDATE SET body = excluded.body, updatedAt = excluded.updatedAt")
            for (pile, data) in rows { try statement.execute(arguments: [pile, data, now]) }
        }
        return changed.count
    }

    func store(_ model: BillingModelReply) {
        models.withLockedValue { $0[model.pileId] = model }
        for hook in hooks.withLockedValue({ $0 }) { hook(model) }
        var body = ByteBuffer()
        model.encode(into: &body)
        let data = Data(body.readableBytesView)
        let pile = model.pileId.description
        let database = self.database
        Task {
            try? await database.write { db in
                try db.execute(
                    sql: "INSERT INTO billing_models (pile, body, updatedAt) VALUES (?, ?, ?) ON CONFLICT(pile) DO UPDATE SET body = excluded.body, updatedAt = excluded.updatedAt",
                    arguments: [pile, data, Date().timeIntervalSince1970])
            }
        }
    }

    /// Remembers a billing model the gateway sees going to a pile: a backend's 0x0A reply, or a
    /// 0x58 push the pile accepted. Other messages are ignored.
    func remember(_ message: YKCMessage) {
        switch message {
        case .billingModelReply(let m): store(m)
        case .billingModelSet(let m):
            store(
                BillingModelReply(
                    pileId: m.pileId, billingModel: m.billingModel, sharpEnergyPrice: m.sharpEnergyPrice,
                    sharpServiceFee: m.sharpServiceFee, peakEnergyPrice: m.peakEnergyPrice, peakServiceFee: m.peakServiceFee,
                    flatEnergyPrice: m.flatEnergyPrice, flatServiceFee: m.flatServiceFee,
                    valleyEnergyPrice: m.valleyEnergyPrice, valleyServiceFee: m.valleyServiceFee, lossRatio: m.lossRatio,
                    periods: m.periods))
        default: break
        }
    }
}
