import Foundation
import Logging
import PileGate

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A gateway built by `GatewayAssembly` (every route, as `pilegate serve` runs it) on ephemeral
/// loopback ports with a configurable setup, for the security tests.
final class AssembledGateway: Sendable {
    let gateway: Gateway
    let dataDirectory: String
    var apiPort: Int { gateway.apiPort ?? 0 }
    var api: String { "http://127.0.0.1:\(apiPort)" }

    static func config(_ configure: (inout GatewayConfiguration) -> Void = { _ in }) -> GatewayConfiguration {
        var config = GatewayConfiguration()
        config.nodeId = "sec-node"
        config.pileHost = "127.0.0.1"
        config.pilePort = 0
        config.apiPort = 0
        config.eventLoopThreads = 1
        config.dataDirectory = NSTemporaryDirectory() + "pilegate-sec-" + UUID().uuidString
        config.drainWindow = 0.1
        config.registryFlushInterval = 0.02
        config.timeSyncOnLogin = false
        config.hub.warmupWindow = 0
        configure(&config)
        return config
    }

    static func start(_ config: GatewayConfiguration) async throws -> AssembledGateway {
        var logger = Logger(label: "pilegate-sec-test")
        // PILEGATE_TEST_LOG=debug (trace, info, …) shows the gateways' logs when chasing a failure.
        logger.logLevel = ProcessInfo.processInfo.environment["PILEGATE_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
        let gateway: Gateway
        do {
            gateway = try GatewayAssembly.make(config: config, logger: logger)
        } catch {
            // Refused while assembling (a bad setting): the stores it opened stay behind otherwise.
            try? FileManager.default.removeItem(atPath: config.dataDirectory)
            throw error
        }
        do {
            try await gateway.start()
        } catch {
            await gateway.shutdown()
            try? FileManager.default.removeItem(atPath: config.dataDirectory)
            throw error
        }
        return AssembledGateway(gateway: gateway, dataDirectory: config.dataDirectory)
    }

    private init(gateway: Gateway, dataDirectory: String) {
        self.gateway = gateway
        self.dataDirectory = dataDirectory
    }

    /// Runs `body` against a fresh gateway and always stops it and removes its data afterwards.
    static func with<T>(_ config: GatewayConfiguration, _ body: (AssembledGateway) async throws -> T) async throws -> T {
        let gw = try await start(config)
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

    struct Answer: Sendable {
        var status: Int
        var body: String
        var headers: [String: String]
        var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]) ?? [:] }
    }

    /// One HTTP request with an optional bearer token.
    func http(_ method: String, _ path: String, token: String? = nil, body: String? = nil) async throws -> Answer {
        var request = URLRequest(url: URL(string: api + path)!, timeoutInterval: 10)
        request.httpMethod = method
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as? HTTPURLResponse
        var headers: [String: String] = [:]
        for (k, v) in http?.allHeaderFields ?? [:] { headers[String(describing: k).lowercased()] = String(describing: v) }
        return Answer(status: http?.statusCode ?? 0, body: String(decoding: data, as: UTF8.self), headers: headers)
    }
}

extension AssembledGateway {
    /// Polls until `condition` holds or `timeout` passes; returns whether it held.
    func eventually(timeout: TimeInterval = 5, _ condition: @Sendable () async -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if await condition() { return true }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        return await condition()
    }
}
