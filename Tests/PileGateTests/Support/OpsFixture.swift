import Foundation
import Logging
import PileGate
import PileSim
import Testing
import YKC

/// A gateway built by `GatewayAssembly` exactly as `pilegate serve` builds it (hub, lane rules,
/// outbox, web view), on ephemeral loopback ports, for the ops tests that drive it through the
/// `pilegate` executable and a browser.
final class OpsGateway: Sendable {
    let gateway: Gateway
    let dataDirectory: String
    let pilePort: Int
    let apiPort: Int
    var api: String { "http://127.0.0.1:\(apiPort)" }

    static func start(_ configure: (inout GatewayConfiguration) -> Void = { _ in }) async throws -> OpsGateway {
        var config = GatewayConfiguration()
        config.nodeId = "ops-node"
        config.pileHost = "127.0.0.1"
        config.pilePort = 0
        config.apiPort = 0
        config.eventLoopThreads = 1
        config.dataDirectory = NSTemporaryDirectory() + "pilegate-ops-" + UUID().uuidString
        config.loginTimeout = 10
        config.livenessTimeout = 10
        config.drainWindow = 0.1
        config.registryFlushInterval = 0.02
        config.timeSyncOnLogin = false
        config.hub.warmupWindow = 0
        configure(&config)
        var logger = Logger(label: "pilegate-ops-test")
        logger.logLevel = .critical
        let gateway = try GatewayAssembly.make(config: config, logger: logger)
        try await gateway.start()
        return OpsGateway(gateway: gateway, dataDirectory: config.dataDirectory)
    }

    private init(gateway: Gateway, dataDirectory: String) {
        self.gateway = gateway
        self.dataDirectory = dataDirectory
        self.pilePort = gateway.pilePort ?? 0
        self.apiPort = gateway.apiPort ?? 0
    }

    /// Runs `body` against a fresh assembled gateway and always stops it afterwards.
    static func with<T>(
        _ configure: (inout GatewayConfiguration) -> Void = { _ in }, _ body: (OpsGateway) async throws -> T
    ) async throws -> T {
        let gw = try await start(configure)
        do {
            let result = try await body(gw)
            await gw.stop()
            return result
        } catch {
            await gw.stop()
            throw error
        }
    }

    func stop() async {
        await gateway.shutdown()
        try? FileManager.default.removeItem(atPath: dataDirectory)
    }

    func pile(_ id: String) async throws -> SimulatedPile {
        var c = SimulatedPileConfig.fast(pileID: PileID(id) ?? PileID(raw: 0), gunCount: 2)
        c.reconnect = .never
        c.requestBillingModel = false
        return try await SimulatedPile.connect(to: pilePort, c)
    }

    /// Polls until `condition` holds; fails the test with `what` when it never does.
    func eventually(_ what: String, timeout: TimeInterval = 5, _ condition: @Sendable () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        if try await condition() { return }
        Issue.record("timed out waiting for \(what)")
    }
}

/// A running scene for the ops tests: lane rules sending 3201… piles to "gray", backends for
/// `billing` in base and gray and `monitor` in base only (so gray monitor traffic falls back),
/// two gray piles and one base pile heartbeating.
struct OpsScene: Sendable {
    let gw: OpsGateway
    let backends: [TestBackend]
    let piles: [SimulatedPile]
    static let grayPiles = ["32010600000001", "32010600000002"]
    static let basePile = "55010600000003"

    static func run<T>(_ body: (OpsScene) async throws -> T) async throws -> T {
        let gw = try await OpsGateway.start()
        var backends: [TestBackend] = []
        var piles: [SimulatedPile] = []
        func teardown() async {
            for p in piles { await p.stop() }
            for b in backends { await b.close() }
            await gw.stop()
        }
        do {
            let rules = try await CLI.run(
                ["lanes", "set", "-", "--api", gw.api], stdin: #"{"rules":[{"lane":"gray","match":{"pilePrefix":"3201"}}]}"#)
            #expect(rules.status == 0, "lanes set: \(rules.stderr)")
            for (service, instance, lane) in [("billing", "b0", ""), ("billing", "g1", "gray"), ("monitor", "m0", "")] {
                let b = try await TestBackend.connect(apiPort: gw.apiPort)
                backends.append(b)
                try await b.subscribe(service: service, instance: instance, lane: lane, events: ["heartbeat", "pile_online"])
            }
            for id in grayPiles + [basePile] {
                let p = try await gw.pile(id)
                piles.append(p)
                _ = try await p.waitForLogin()
            }
            try await gw.eventually("routed and fallback heartbeats") {
                let lanes = gw.gateway.statsDocument().extensions["hub"]?["lanes"]
                return (lanes?["gray"]?["billing"]?["routed"]?.intValue ?? 0) > 0
                    && (lanes?["gray"]?["monitor"]?["fallbacks"]?.intValue ?? 0) > 0
                    && (lanes?[""]?["billing"]?["acks"]?.intValue ?? 0) > 0
            }
            let result = try await body(OpsScene(gw: gw, backends: backends, piles: piles))
            await teardown()
            return result
        } catch {
            await teardown()
            throw error
        }
    }
}

/// Runs the built `pilegate` executable without blocking Swift's cooperative threads (the
/// gateway under test answers on them).
enum CLI {
    struct Run: Sendable {
        var status: Int32
        var stdout: String
        var stderr: String
        var lines: [String] { stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }
        var json: JSONValue? { try? JSONValue.parse(stdout) }
    }

    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The executable next to the test bundle (`swift build --build-tests` builds it there).
    static var executable: URL? {
        let candidates = [
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("pilegate"),
            Bundle.main.bundleURL.appendingPathComponent("pilegate"),
            repositoryRoot.appendingPathComponent(".build/debug/pilegate"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    static func run(_ arguments: [String], stdin: String? = nil) async throws -> Run {
        let exe = try #require(executable, "pilegate executable not found; run `swift build` first")
        return try await spawn(exe, arguments, stdin: stdin)
    }

    static func spawn(_ exe: URL, _ arguments: [String], stdin: String? = nil, environment: [String: String]? = nil) async throws -> Run {
        let p = Process()
        p.executableURL = exe
        p.arguments = arguments
        if let environment { p.environment = environment }
        let out = Pipe()
        let err = Pipe()
        let input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input
        try p.run()
        return await withCheckedContinuation { continuation in
            // A plain thread does the blocking reads and wait.
            let thread = Thread {
                if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
                try? input.fileHandleForWriting.close()
                let errData = LockedData()
                let errThread = Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
                errThread.start()
                let o = out.fileHandleForReading.readDataToEndOfFile()
                p.waitUntilExit()
                let e = errData.wait()
                continuation.resume(
                    returning: Run(
                        status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                        stderr: String(decoding: e, as: UTF8.self)))
            }
            thread.start()
        }
    }

    final class LockedData: @unchecked Sendable {
        private let condition = NSCondition()
        private var data: Data?
        func set(_ d: Data) {
            condition.lock()
            data = d
            condition.signal()
            condition.unlock()
        }
        func wait() -> Data {
            condition.lock()
            defer { condition.unlock() }
            while data == nil { condition.wait() }
            return data ?? Data()
        }
    }
}
