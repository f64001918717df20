import Foundation
import GRDB
import Logging
@testable import PileGate
import PileSim
import Testing
import YKC

extension ReliabilityTests {
    /// The SQLite stores with real files: an emptied or unreadable file stops start-up instead of
    /// becoming a new empty database, a clean shutdown leaves one self-contained file, and a store
    /// that cannot commit makes the gateway not ready.
    @Suite("Stores: empty or damaged files, checkpoint at shutdown, readiness")
    struct StoreSafetyTests {
        static func directory() -> String { NSTemporaryDirectory() + "pilegate-store-" + UUID().uuidString }

        static func config(_ dir: String) -> GatewayConfiguration {
            var c = GatewayConfiguration()
            c.nodeId = "store-test"
            c.pileHost = "127.0.0.1"
            c.pilePort = 0
            c.apiPort = 0
            c.eventLoopThreads = 1
            c.dataDirectory = dir
            c.drainWindow = 0.1
            c.registryFlushInterval = 0.02
            c.timeSyncOnLogin = false
            c.hub.warmupWindow = 0
            return c
        }

        static var logger: Logger {
            var l = Logger(label: "store-test")
            l.logLevel = .critical
            return l
        }

        /// Builds the gateway as `serve` does; returns the start-up error's text, or nil.
        static func startError(_ config: GatewayConfiguration) async -> String? {
            do {
                let gateway = try GatewayAssembly.make(config: config, logger: logger)
                try await gateway.start()
                await gateway.shutdown()
                return nil
            } catch {
                return "\(error)"
            }
        }

        @Test("a 0-byte outbox.sqlite or pilegate.sqlite stops start-up naming the file; freshStore moves it aside")
        func emptyFiles() async throws {
            for file in ["outbox.sqlite", "pilegate.sqlite"] {
                let dir = Self.directory()
                defer { try? FileManager.default.removeItem(atPath: dir) }
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                let path = dir + "/" + file
                _ = FileManager.default.createFile(atPath: path, contents: Data())
                let error = try #require(await Self.startError(Self.config(dir)), "\(file): started on an empty store")
                #expect(error.contains(path) && error.contains("exists but is empty (0 bytes, no tables)"), "\(error)")
                #expect(error.contains("--fresh-store"))
                // Still refused on the next try: the file was not turned into a new database.
                #expect(await Self.startError(Self.config(dir)) != nil)
                var fresh = Self.config(dir)
                fresh.freshStore = true
                #expect(await Self.startError(fresh) == nil)
                let aside = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix(file + ".damaged-") }
                #expect(!aside.isEmpty, "the old file is kept aside")
                // The new store is a real one now: a normal start works.
                #expect(await Self.startError(Self.config(dir)) == nil)
            }
        }

        @Test("a file that is not a database stops start-up with the SQLite reason")
        func unreadableFile() async throws {
            let dir = Self.directory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: dir + "/outbox.sqlite", contents: Data(repeating: 0x5A, count: 8192))
            let error = try #require(await Self.startError(Self.config(dir)))
            #expect(error.contains("outbox.sqlite cannot be read (SQLite: file is not a database)"), "\(error)")
        }

        @Test("a clean shutdown checkpoints: the main file alone holds every pending bill")
        func checkpointAtShutdown() async throws {
            let dir = Self.directory()
            let copy = Self.directory()
            defer {
                try? FileManager.default.removeItem(atPath: dir)
                try? FileManager.default.removeItem(atPath: copy)
            }
            let gateway = try GatewayAssembly.make(config: Self.config(dir), logger: Self.logger)
            try await gateway.start()
            // A durable service that is away: the bills wait for it.
            let away = try await TestBackend.connect(apiPort: try #require(gateway.apiPort))
            try await away.subscribe(service: "billing", instance: "b1", events: ["transaction_record"])
            await away.close()
            var c = SimulatedPileConfig.fast(pileID: PileID("66010600000400")!, gunCount: 1)
            c.reconnect = .never
            c.requestBillingModel = false
            let pile = try await SimulatedPile.connect(to: try #require(gateway.pilePort), c)
            try await pile.waitForLogin()
            let serials = (1...5).map { TradeSerial("6601060000040001241123120000000\($0)")! }
            for s in serials {
                try await pile.uploadBill(bill("66010600000400", serial: s.description))
                try await pile.waitForBillAck(s, timeout: .seconds(3))
            }
            await pile.stop()
            await gateway.shutdown()
            for file in ["outbox.sqlite", "pilegate.sqlite"] {
                let wal = dir + "/" + file + "-wal"
                let size = (try? FileManager.default.attributesOfItem(atPath: wal)[.size] as? NSNumber)?.intValue ?? 0
                #expect(size == 0, "\(file)-wal holds \(size) bytes after a clean shutdown")
            }
            // Copy only the main file, as a careless backup would.
            try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: dir + "/outbox.sqlite", toPath: copy + "/outbox.sqlite")
            let outbox = try Outbox(directory: copy, logger: Self.logger)
            let stored = try await outbox.events(service: nil, after: 0, limit: 100)
            #expect(stored.compactMap(\.tradeSerial) == serials.map(\.description))
            await outbox.stop()
        }

        @Test("an outbox that cannot commit: /readyz is 503 naming it, the failure is logged, no 0x40; ready again once it commits")
        func readinessFollowsCommits() async throws {
            try await withOutbox { gw, _, outbox in
                #expect(try await gw.http("GET", "/readyz").status == 200)
                // A damaged store, as SQLite reports it: every insert into the events table fails.
                try await outbox.database.write { db in
                    try db.execute(
                        sql: "CREATE TRIGGER damaged BEFORE INSERT ON outbox_events BEGIN SELECT RAISE(ABORT, 'database disk image is malformed'); END")
                }
                let pile = try await gw.pile("66010600000401", guns: 1) { $0.requestBillingModel = false }
                try await pile.waitForLogin()
                let serial = TradeSerial("66010600000401012411231200000001")!
                try await pile.uploadBill(bill("66010600000401", serial: serial.description))
                #expect(await gw.eventually { outbox.problem != nil })
                let ready = try await gw.http("GET", "/readyz")
                #expect(ready.status == 503)
                #expect((ready.object["reason"] as? String)?.contains("outbox.sqlite cannot commit") == true, "\(ready.body)")
                #expect(!(await pile.state()).billsAcked.contains(serial))
                try await outbox.database.write { db in try db.execute(sql: "DROP TRIGGER damaged") }
                try await pile.waitForBillAck(serial, timeout: .seconds(5))
                #expect(await gw.eventually { (try? await gw.http("GET", "/readyz").status) == 200 })
                await pile.stop()
            }
        }
    }
}
