import Foundation
import Logging
import NIOSSL
import PileGate
import PileSim
import Testing
import YKC

/// Reloading the configuration without dropping piles (issue 13, item 4): over real sockets, by
/// `POST /v1/config/reload` and by SIGHUP to a real `pilegate serve`.
@Suite("Configuration reload")
struct ConfigurationReloadTests {
    /// A config file for a test gateway: loopback, ephemeral ports, a data directory the harness
    /// removes, plus `settings`.
    static func writeConfig(_ path: String, dataDirectory: String, _ settings: [String: Any]) throws {
        var object: [String: Any] = [
            "nodeId": "reload-node", "pileHost": "127.0.0.1", "pilePort": 0, "apiPort": 0, "dataDirectory": dataDirectory,
            "loginTimeout": 10, "livenessTimeout": 10, "drainWindow": 0.2, "registryFlushInterval": 0.02, "timeSyncOnLogin": false,
        ]
        object.merge(settings) { $1 }
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path))
    }

    /// A gateway started from `file` whose reloads read `file` again.
    static func withFileGateway(_ settings: [String: Any], _ body: (TestGateway, String) async throws -> Void) async throws {
        let file = NSTemporaryDirectory() + "pilegate-reload-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let data = NSTemporaryDirectory() + "pilegate-test-" + UUID().uuidString
        try writeConfig(file, dataDirectory: data, settings)
        let loaded = try GatewayConfiguration.load(file: file, environment: [:])
        let source = { @Sendable () throws(ConfigurationError) -> GatewayConfiguration in try GatewayConfiguration.load(file: file, environment: [:]) }
        try await withGateway(config: TestGateway.configuration { $0 = loaded }, configurationSource: source) { gw in
            try await body(gw, file)
        }
    }

    /// Sends `count` heartbeats before any login (each a refused frame).
    static func refusedFrames(_ client: RawClient, _ count: Int, from sequence: UInt16 = 1) async throws {
        for i in 0..<count { try await client.send(Frames.heartbeat("32010600019300", sequence: sequence + UInt16(i))) }
    }

    @Test("a lowered limit applies to new connections after POST /v1/config/reload; a logged-in pile and an older connection keep theirs")
    func reloadAppliesToNewConnections() async throws {
        try await Self.withFileGateway(["maxRefusedFrames": 20]) { gw, file in
            let pile = try await gw.pile("32010600019301", guns: 1)
            try await pile.waitForLogin()
            let older = try await RawClient.connect(port: gw.pilePort)
            try await Self.refusedFrames(older, 2)
            #expect(await gw.eventually { gw.counters.refusedBeforeLogin.load(ordering: .relaxed) == 2 })

            try Self.writeConfig(file, dataDirectory: gw.dataDirectory, ["maxRefusedFrames": 1])
            let r = try await gw.http("POST", "/v1/config/reload")
            #expect(r.status == 200, "\(r.body)")
            #expect(r.object["applied"] as? [String] == ["maxRefusedFrames"])
            #expect(r.object["restartRequired"] as? [String] == [])
            #expect(r.object["generation"] as? Int == 1)
            #expect(gw.gateway.config.maxRefusedFrames == 1)

            // A new connection: the second refused frame is one too many.
            let newer = try await RawClient.connect(port: gw.pilePort)
            try await Self.refusedFrames(newer, 2)
            #expect(await gw.eventually { newer.isClosed })
            #expect(await gw.eventually { gw.counters.closed[.refusedFrames]?.load(ordering: .relaxed) == 1 })
            // The older connection keeps the limit it was accepted with.
            let refused = gw.counters.refusedBeforeLogin.load(ordering: .relaxed)
            try await Self.refusedFrames(older, 2, from: 10)
            #expect(await gw.eventually { gw.counters.refusedBeforeLogin.load(ordering: .relaxed) == refused + 2 })
            try await Task.sleep(nanoseconds: 100_000_000)
            #expect(!older.isClosed)
            // The logged-in pile was never dropped and is still answered.
            let acked = await pile.state().guns.first?.heartbeatsAcked ?? 0
            let later = try await pile.waitUntil(timeout: .seconds(5), "heartbeats after the reload") { s in
                (s.guns.first?.heartbeatsAcked ?? 0) >= acked + 2
            }
            #expect(later.isLoggedIn && later.loginsAccepted == 1)
            #expect(gw.counters.loginsAccepted.load(ordering: .relaxed) == 1)
            await older.close()
            await pile.stop()
        }
    }

    @Test("an invalid file is refused as a whole (422, the reason named) and the old values stay; restart-only changes are named and keep their running value")
    func invalidAndRestartOnly() async throws {
        try await Self.withFileGateway(["maxRefusedFrames": 20, "frameBurst": 200]) { gw, file in
            // One good value and one out of range: nothing applies.
            try Self.writeConfig(file, dataDirectory: gw.dataDirectory, ["frameBurst": 300, "maxRefusedFrames": 0])
            var r = try await gw.http("POST", "/v1/config/reload")
            #expect(r.status == 422)
            #expect(r.object["error"] as? String == "invalid_configuration")
            #expect((r.object["message"] as? String)?.contains("invalid setting 'maxRefusedFrames'") == true, "\(r.body)")
            // Values that are fine alone but not together.
            try Self.writeConfig(file, dataDirectory: gw.dataDirectory, ["maxConnections": 10, "maxConnectionsPerAddress": 20])
            r = try await gw.http("POST", "/v1/config/reload")
            #expect(r.status == 422 && r.body.contains("maxConnectionsPerAddress"), "\(r.body)")
            // Not JSON at all.
            try "{\"frameBurst\": ".write(toFile: file, atomically: true, encoding: .utf8)
            r = try await gw.http("POST", "/v1/config/reload")
            #expect(r.status == 422 && r.body.contains("not valid JSON"), "\(r.body)")
            #expect(gw.gateway.config.frameBurst == 200 && gw.gateway.config.maxRefusedFrames == 20)
            #expect(gw.gateway.context.live.generation == 0)

            // Restart-only settings are named; the live one next to them applies.
            try Self.writeConfig(
                file, dataDirectory: gw.dataDirectory,
                ["frameBurst": 300, "pilePort": 18767, "listenBacklog": 128, "hubAckTimeout": 3, "nodeId": "renamed"])
            r = try await gw.http("POST", "/v1/config/reload")
            #expect(r.status == 200, "\(r.body)")
            #expect(r.object["applied"] as? [String] == ["frameBurst"])
            #expect(r.object["restartRequired"] as? [String] == ["nodeId", "pilePort", "listenBacklog", "hubAckTimeout"])
            #expect(gw.gateway.config.frameBurst == 300)
            #expect(gw.gateway.config.pilePort == 0 && gw.gateway.config.nodeId == "reload-node")
            // The pile port still serves.
            let pile = try await gw.pile("32010600019302", guns: 1)
            try await pile.waitForLogin()
            await pile.stop()
        }
    }

    @Test("without a configuration source (not started by serve) a reload answers 409")
    func unavailable() async throws {
        try await withGateway { gw in
            let r = try await gw.http("POST", "/v1/config/reload")
            #expect(r.status == 409 && r.object["error"] as? String == "reload_unavailable", "\(r.body)")
        }
    }

    @Test("a reload re-reads the API's certificate: new HTTPS connections see the new one; a key that does not load refuses the reload")
    func apiCertificateReload() async throws {
        let certs = try TestCertificates.make(clients: [], servers: ["rotated-api"], ellipticCurve: true)
        defer { certs.remove() }
        let cert = certs.directory + "/api.pem"
        let key = certs.directory + "/api.key"
        try FileManager.default.copyItem(atPath: certs.serverCert, toPath: cert)
        try FileManager.default.copyItem(atPath: certs.serverKey, toPath: key)
        try await Self.withFileGateway(["apiTLSCertificate": cert, "apiTLSKey": key]) { gw, file in
            let tls = try TLSPileClient.context(ca: certs.caCert)
            let before = try await TLSPileClient.connect(port: gw.apiPort, context: tls)
            #expect(await before.handshake())
            #expect(try await before.serverCommonName() == "127.0.0.1")
            await before.close()

            try FileManager.default.removeItem(atPath: cert)
            try FileManager.default.removeItem(atPath: key)
            try FileManager.default.copyItem(atPath: certs.directory + "/rotated-api.pem", toPath: cert)
            try FileManager.default.copyItem(atPath: certs.directory + "/rotated-api.key", toPath: key)
            let result = try gw.gateway.reloadConfiguration()
            #expect(result.certificatesReloaded == ["api"] && result.applied.isEmpty)
            let after = try await TLSPileClient.connect(port: gw.apiPort, context: tls)
            #expect(await after.handshake())
            #expect(try await after.serverCommonName() == "rotated-api")
            await after.close()
            #expect(try await TLSProbe.request(port: gw.apiPort, tls: try TLSProbe.client(ca: certs.caCert), "/healthz").status == 200)

            try "not a key".write(toFile: key, atomically: true, encoding: .utf8)
            try Self.writeConfig(file, dataDirectory: gw.dataDirectory, ["apiTLSCertificate": cert, "apiTLSKey": key, "frameBurst": 999])
            #expect(throws: ConfigurationReloadError.self) { try gw.gateway.reloadConfiguration() }
            #expect(gw.gateway.config.frameBurst != 999, "a refused reload changes nothing")
            let still = try await TLSPileClient.connect(port: gw.apiPort, context: tls)
            #expect(await still.handshake())
            #expect(try await still.serverCommonName() == "rotated-api")
            await still.close()
        }
    }

    @Test("SIGHUP to pilegate serve reloads the file: the new limit applies to new connections, restart-only changes are logged, the process keeps running")
    func sighup() async throws {
        let file = NSTemporaryDirectory() + "pilegate-hup-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try #"{"maxRefusedFrames": 20}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let serve = try ServeProcess.start(arguments: ["--config", file])
        defer { serve.cleanUp() }
        let (pilePort, _) = try await serve.waitUntilStarted()
        let pile = try await RawClient.connect(port: pilePort)
        try await pile.send(Frames.login("32010600019303"))
        #expect(await waitFor { Frames.parse(pile.receivedBytes).contains { $0.code == 0x02 } })

        try #"{"maxRefusedFrames": 1, "listenBacklog": 64}"#.write(toFile: file, atomically: true, encoding: .utf8)
        serve.signal(SIGHUP)
        #expect(await waitFor { serve.stderr.contains("configuration reloaded") }, "\(serve.stderr)")
        let line = serve.lines.first { $0.contains("configuration reloaded") } ?? ""
        #expect(line.contains("applied=maxRefusedFrames") && line.contains("restart_required=listenBacklog"), "\(line)")
        // Logged right after the line above: wait for it too.
        #expect(await waitFor { serve.stderr.contains("changed settings that apply only after a restart") })

        let newer = try await RawClient.connect(port: pilePort)
        try await Self.refusedFrames(newer, 2)
        #expect(await waitFor { newer.isClosed }, "the reloaded maxRefusedFrames applies")
        // The pile logged in before the reload is still connected and answered.
        try await pile.send(Frames.heartbeat("32010600019303", sequence: 7))
        #expect(await waitFor { Frames.parse(pile.receivedBytes).contains { $0.code == 0x04 } })
        #expect(!pile.isClosed && !serve.hasExited)

        // A broken file: logged, the process keeps running with the old values.
        try #"{"maxRefusedFrames": -1}"#.write(toFile: file, atomically: true, encoding: .utf8)
        serve.signal(SIGHUP)
        #expect(await waitFor { serve.stderr.contains("configuration not reloaded, the running one stays") }, "\(serve.stderr)")
        #expect(!serve.hasExited)
        await pile.close()
        await newer.close()
        serve.signal(SIGTERM)
        #expect(await serve.waitForExit(timeout: 20) != nil)
    }

    @Test("the log level follows a reload: LiveLevelLogHandler reads the shared level, a logger's own level is a floor")
    func liveLogLevel() {
        let level = LiveLogLevel(.info)
        let captured = CapturedLog()
        var logger = Logger(label: "t") { _ in LiveLevelLogHandler(CaptureHandler(log: captured), level: level) }
        logger.debug("hidden")
        level.level = .debug
        logger.debug("shown")
        logger.logLevel = .notice
        logger.info("below the floor")
        #expect(captured.messages == ["shown"])
    }

    private func waitFor(timeout: TimeInterval = 10, _ condition: () -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        return condition()
    }
}
