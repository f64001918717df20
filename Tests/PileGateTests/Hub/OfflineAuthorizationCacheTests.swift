import Foundation
import GRDB
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
}
