import Foundation
import GRDB
import NIOConcurrencyHelpers
import NIOPosix
@testable import PileGate
import Testing
import YKC

/// The offline decision cache and the ledger of issued serials on a real SQLite file: bounded,
/// later decisions win, what is kept is what a reopened store finds.
@Suite("Offline authorization cache and ledger")
struct OfflineAuthorizationCacheTests {
    static func withDatabase(_ body: (String, DatabasePool) async throws -> Void) async throws {
        let directory = NSTemporaryDirectory() + "pilegate-offline-cache-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let pool = try DatabasePool(path: directory + "/test.sqlite")
        try await body(directory, pool)
        try pool.close()
    }

    static func decision(_ approved: Bool, at seconds: Double) -> OfflineAuthorizationCache.Decision {
        .init(approved: approved, decidedAt: Date(timeIntervalSince1970: seconds), balanceCents: 100, logicalCardNumber: "0", pile: "1")
    }

    @Test("at most capacity credentials: the least recently decided go first, in memory and on disk; a reopened cache finds the rest")
    func bounded() async throws {
        try await Self.withDatabase { _, pool in
            let now = Date(timeIntervalSince1970: 2_000_000_000)
            let cache = try OfflineAuthorizationCache(database: pool, capacity: 10, maxAge: 86_400, now: now)
            for i in 0..<11 {
                cache.record(OfflineCredential(card: BinaryID(raw: UInt64(i + 1))), Self.decision(true, at: now.timeIntervalSince1970 - 100 + Double(i)))
            }
            await cache.flush()
            // 11 > 10: a tenth of the capacity goes at once, the oldest first.
            #expect(cache.count == 9)
            #expect(cache.decision(for: OfflineCredential(card: BinaryID(raw: 1))) == nil)
            #expect(cache.decision(for: OfflineCredential(card: BinaryID(raw: 2))) == nil)
            #expect(cache.decision(for: OfflineCredential(card: BinaryID(raw: 11)))?.approved == true)
            let rows = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM offline_auth_decisions") }
            #expect(rows == 9)
            // An older decision arriving late does not replace a newer one.
            cache.record(OfflineCredential(card: BinaryID(raw: 11)), Self.decision(false, at: 0))
            await cache.flush()
            let reopened = try OfflineAuthorizationCache(database: pool, capacity: 10, maxAge: 86_400, now: now)
            #expect(reopened.count == 9)
            #expect(reopened.decision(for: OfflineCredential(card: BinaryID(raw: 11)))?.approved == true)
            // Decisions older than maxAge are dropped when the cache opens.
            let later = try OfflineAuthorizationCache(database: pool, capacity: 10, maxAge: 95.5, now: now)
            #expect(later.count == 6)
        }
    }

    @Test("the ledger keeps issued serials across a reopen, bounded, and completes each record once committed")
    func ledger() async throws {
        try await Self.withDatabase { _, pool in
            let now = Date(timeIntervalSince1970: 2_000_000_000)
            let ledger = try OfflineAuthorizationLedger(database: pool, capacity: 10, now: now)
            let loop = MultiThreadedEventLoopGroup.singleton.any()
            for i in 0..<11 {
                let done = loop.makePromise(of: Void.self)
                let serial = try #require(TradeSerial("5501060000070002261201081004\(1000 + i)"))
                ledger.record(
                    .init(
                        tradeSerial: serial, pile: "55010600000700", gun: 2, credential: "card:\(i)", reason: "recent", capCents: 5000,
                        authorizedAt: now.addingTimeInterval(Double(i)), eventId: "e\(i)"),
                    done: done)
                try await done.futureResult.get()
            }
            #expect(ledger.count == 9)
            #expect(!ledger.contains(try #require(TradeSerial("55010600000700022612010810041000"))))
            #expect(ledger.entry(for: try #require(TradeSerial("55010600000700022612010810041010")))?.eventId == "e10")
            let reopened = try OfflineAuthorizationLedger(database: pool, capacity: 10, now: now)
            #expect(reopened.count == 9)
        }
    }

    @Test("decisions adopted from other nodes: the newest wins either way, and only this node's own decisions are announced")
    func adoptedDecisions() async throws {
        try await Self.withDatabase { _, pool in
            let cache = try OfflineAuthorizationCache(database: pool, capacity: 10, maxAge: 86_400, now: Date(timeIntervalSince1970: 2_000_000_000))
            let announced = NIOLockedValueBox<[Bool]>([])
            cache.onRecord { _, d in announced.withLockedValue { $0.append(d.approved) } }
            let card = OfflineCredential(card: BinaryID(raw: 7))
            cache.record(card, Self.decision(true, at: 2_000_000_000 - 10))
            // A later refusal adopted from another node replaces the approval, and is not announced back.
            cache.record(card, Self.decision(false, at: 2_000_000_000 - 5), shared: false)
            #expect(cache.decision(for: card)?.approved == false)
            // A late, older approval adopted from another node does not replace it.
            cache.record(card, Self.decision(true, at: 2_000_000_000 - 8), shared: false)
            #expect(cache.decision(for: card)?.approved == false)
            await cache.flush()
            let approved = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT approved FROM offline_auth_decisions") }
            #expect(approved == 0)
            #expect(announced.withLockedValue { $0 } == [true])
        }
    }
}
