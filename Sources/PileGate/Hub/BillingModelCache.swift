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

    func store(_ model: BillingModelReply) {
        models.withLockedValue { $0[model.pileId] = model }
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
