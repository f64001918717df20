import Foundation
import NIOCore
import NIOSSL
import PileGate
import PileSim
import Testing
import YKC

/// TLS for piles on the second listener (`pileTLSPort`): real TLS piles over loopback with
/// certificates the `openssl` command line makes, certificate reload without dropping live piles,
/// client certificates bound to pile ids, and handshakes that fail or stall.
@Suite("Security: TLS for piles")
struct PileTLSTests {
    static func tlsGateway(
        _ certs: TestCertificates, clientCA: Bool = false, _ configure: @escaping (inout GatewayConfiguration) -> Void = { _ in },
        _ body: (TestGateway, Int) async throws -> Void
    ) async throws {
        try await withGateway({
            $0.pileTLSPort = 0
            $0.pileTLSCertificate = certs.serverCert
            $0.pileTLSKey = certs.serverKey
            if clientCA { $0.pileTLSClientCA = certs.caCert }
            configure(&$0)
        }) { gw in
            let port = try #require(gw.gateway.pileTLSPort)
            #expect(port != gw.pilePort)
            try await body(gw, port)
        }
    }

    static func tlsPile(_ gw: TestGateway, port: Int, _ id: String, context: NIOSSLContext) async throws -> SimulatedPile {
        var c = SimulatedPileConfig.fast(pileID: PileID(id) ?? PileID(raw: 0), gunCount: 1)
        c.reconnect = .never
        c.tls = context
        return try await SimulatedPile.connect(to: port, c)
    }

    @Test("a TLS pile logs in and heartbeats; plain TCP still works beside it; handshakes are counted in /v1/stats and /metrics")
    func loginAndHeartbeat() async throws {
        let certs = try TestCertificates.make(clients: [], ellipticCurve: true)
        defer { certs.remove() }
        try await Self.tlsGateway(certs) { gw, port in
            let pile = try await Self.tlsPile(gw, port: port, "32010600019236", context: try TLSPileClient.context(ca: certs.caCert))
            try await pile.waitForLogin()
            let state = try await pile.waitUntil(timeout: .seconds(5), "heartbeats answered over TLS") { s in
                s.guns.first.map { $0.heartbeatsAcked >= 2 } ?? false
            }
            #expect(state.isLoggedIn)
            #expect(gw.gateway.directory.session(for: PileID("32010600019236")!) != nil)
            let plain = try await gw.pile("32010600019237")
            try await plain.waitForLogin()
            #expect(gw.counters.tlsHandshakes.load(ordering: .relaxed) == 1)
            let stats = try await gw.http("GET", "/v1/stats")
            let counters = stats.object["counters"] as? [String: Any]
            #expect(counters?["tlsHandshakes"] as? Int == 1, "\(stats.body.prefix(300))")
            #expect((counters?["tlsHandshakeFailures"] as? [String: Int])?["timeout"] == 0)
            let metrics = try await gw.http("GET", "/metrics")
            #expect(metrics.body.contains("pilegate_pile_tls_handshakes_total 1"))
            #expect(metrics.body.contains(#"pilegate_pile_tls_handshake_failures_total{reason="not_tls"} 0"#))
            await pile.stop()
            await plain.stop()
        }
    }

    @Test("a reloaded certificate serves new handshakes while a live TLS pile keeps heartbeating; files that do not load keep the old one")
    func reloadKeepsLivePiles() async throws {
        let certs = try TestCertificates.make(clients: [], servers: ["rotated"], ellipticCurve: true)
        defer { certs.remove() }
        // The configured paths are copies, overwritten by the rotation as an operator would.
        let cert = certs.directory + "/live.pem"
        let key = certs.directory + "/live.key"
        try FileManager.default.copyItem(atPath: certs.serverCert, toPath: cert)
        try FileManager.default.copyItem(atPath: certs.serverKey, toPath: key)
        try await Self.tlsGateway(certs, { $0.pileTLSCertificate = cert; $0.pileTLSKey = key }) { gw, port in
            let context = try TLSPileClient.context(ca: certs.caCert)
            let pile = try await Self.tlsPile(gw, port: port, "32010600019238", context: context)
            try await pile.waitForLogin()
            let before = try await TLSPileClient.connect(port: port, context: context)
            #expect(await before.handshake())
            #expect(try await before.serverCommonName() == "127.0.0.1")
            await before.close()

            try FileManager.default.removeItem(atPath: cert)
            try FileManager.default.removeItem(atPath: key)
            try FileManager.default.copyItem(atPath: certs.directory + "/rotated.pem", toPath: cert)
            try FileManager.default.copyItem(atPath: certs.directory + "/rotated.key", toPath: key)
            // What SIGHUP does: the configuration again, and its TLS files read again.
            let reload = try gw.gateway.reload(to: gw.gateway.config)
            #expect(reload.certificatesReloaded == ["pile"] && reload.applied.isEmpty)

            let after = try await TLSPileClient.connect(port: port, context: context)
            #expect(await after.handshake())
            #expect(try await after.serverCommonName() == "rotated")
            await after.close()
            // The live pile was not dropped: same session, still answered.
            let acked = await pile.state().guns.first?.heartbeatsAcked ?? 0
            let later = try await pile.waitUntil(timeout: .seconds(5), "more heartbeats after the reload") { s in
                (s.guns.first?.heartbeatsAcked ?? 0) >= acked + 2
            }
            #expect(later.isLoggedIn && later.loginsAccepted == 1)
            #expect(gw.counters.loginsAccepted.load(ordering: .relaxed) == 1)

            // A key that is not a key: refused, the rotated certificate stays.
            try "not a key".write(toFile: key, atomically: true, encoding: .utf8)
            #expect(throws: ConfigurationReloadError.self) { try gw.gateway.reload(to: gw.gateway.config) }
            let still = try await TLSPileClient.connect(port: port, context: context)
            #expect(await still.handshake())
            #expect(try await still.serverCommonName() == "rotated")
            await still.close()
            await pile.stop()
        }
    }

    @Test("client certificates: the pile id it names logs in, another pile id is refused and counted, no certificate or a rogue one fails the handshake")
    func clientCertificateBinding() async throws {
        let certs = try TestCertificates.make(clients: ["32010600019239"], ellipticCurve: true)
        defer { certs.remove() }
        try await Self.tlsGateway(certs, clientCA: true) { gw, port in
            let (cert, key) = certs.client("32010600019239")
            let withCert = try TLSPileClient.context(ca: certs.caCert, cert: cert, key: key)
            let pile = try await Self.tlsPile(gw, port: port, "32010600019239", context: withCert)
            try await pile.waitForLogin()

            // The same certificate claiming another pile id: 0x02 rejected, closed, counted.
            let impostor = try await TLSPileClient.connect(port: port, context: withCert)
            #expect(await impostor.handshake())
            try await impostor.send(Frames.login("32010600019240"))
            #expect(await gw.eventually { impostor.isClosed })
            let replies = Frames.parse(impostor.receivedBytes).compactMap { f -> LoginReply? in
                if case .loginReply(let r) = YKCMessage.decode(f) { r } else { nil }
            }
            #expect(replies.map(\.result) == [.rejected])
            #expect(gw.counters.refusedCertificateMismatch.load(ordering: .relaxed) == 1)
            #expect(await gw.eventually { gw.counters.closed[.certificateMismatch]?.load(ordering: .relaxed) == 1 })
            #expect(gw.gateway.directory.session(for: PileID("32010600019240")!) == nil)
            let metrics = try await gw.http("GET", "/metrics")
            #expect(metrics.body.contains(#"pilegate_logins_refused_total{reason="certificate_mismatch"} 1"#))

            // No certificate, or one from a CA the gateway does not trust: no session, counted by reason.
            for (label, context, reason) in [
                ("no certificate", try TLSPileClient.context(ca: certs.caCert), PileTLSHandshakeFailure.noClientCertificate),
                ("rogue CA", try TLSPileClient.context(ca: certs.caCert, cert: certs.client("rogue").cert, key: certs.client("rogue").key),
                 .badClientCertificate),
            ] {
                let client = try await TLSPileClient.connect(port: port, context: context)
                _ = await client.handshake()
                // Under TLS 1.3 the client may finish before the server checks its certificate:
                // whatever it sends then goes nowhere.
                try? await client.send(Frames.login("32010600019239"))
                #expect(await gw.eventually { client.isClosed }, "\(label)")
                #expect(
                    await gw.eventually { gw.counters.tlsHandshakeFailures[reason]?.load(ordering: .relaxed) == 1 },
                    "\(label): \(gw.counters.snapshot().tlsHandshakeFailures)")
                #expect(Frames.parse(client.receivedBytes).isEmpty, "\(label)")
            }
            #expect(gw.counters.loginsAccepted.load(ordering: .relaxed) == 1)
            #expect(await pile.state().isLoggedIn, "the genuine pile is untouched")
            await pile.stop()
        }
    }

    @Test("a handshake that stalls (nothing sent, half a ClientHello) is closed after pileTLSHandshakeTimeout; plain YKC on the TLS port is refused as not_tls")
    func stalledHandshakes() async throws {
        let certs = try TestCertificates.make(clients: [], ellipticCurve: true)
        defer { certs.remove() }
        try await Self.tlsGateway(certs, { $0.pileTLSHandshakeTimeout = 0.3; $0.loginTimeout = 30 }) { gw, port in
            let silent = try await RawClient.connect(port: port)
            // A TLS record header announcing a 200-byte ClientHello, and only its first bytes.
            let half = try await RawClient.connect(port: port)
            try await half.send([0x16, 0x03, 0x01, 0x00, 0xC8, 0x01, 0x00, 0x00, 0xC4, 0x03, 0x03] + [UInt8](repeating: 0x42, count: 20))
            let opened = Date()
            // Closed by the handshake timeout, long before the login timeout (30 s).
            #expect(await gw.eventually(timeout: 5) { silent.isClosed && half.isClosed })
            #expect(Date().timeIntervalSince(opened) < 10)
            #expect(gw.counters.tlsHandshakeFailures[.timeout]?.load(ordering: .relaxed) == 2)
            #expect(await gw.eventually { gw.counters.connections.load(ordering: .relaxed) == 0 })
            #expect(gw.counters.closed[.loginTimeout]?.load(ordering: .relaxed) == 2)

            let plain = try await RawClient.connect(port: port)
            try await plain.send(Frames.login("32010600019241"))
            #expect(await gw.eventually { plain.isClosed })
            #expect(await gw.eventually { gw.counters.tlsHandshakeFailures[.notTLS]?.load(ordering: .relaxed) == 1 })
            #expect(gw.counters.loginsAccepted.load(ordering: .relaxed) == 0)
        }
    }

    @Test("pilegate simulate --tls-ca drives TLS piles; with --tls-cert the pile its certificate names logs in and another is refused")
    func simulateOverTLS() async throws {
        let certs = try TestCertificates.make(clients: ["32010600019250"], ellipticCurve: true)
        defer { certs.remove() }
        try await Self.tlsGateway(certs) { gw, port in
            let run = try await CLI.run([
                "simulate", "--gateway", "127.0.0.1:\(port)", "--piles", "3", "--first-id", "32010600019260", "--duration", "1",
                "--heartbeat", "0.3", "--tls-ca", certs.caCert, "--expect-all-login",
            ])
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            #expect(gw.counters.tlsHandshakes.load(ordering: .relaxed) >= 3)
            #expect(gw.counters.loginsAccepted.load(ordering: .relaxed) >= 3)
        }
        try await Self.tlsGateway(certs, clientCA: true) { gw, port in
            let (cert, key) = certs.client("32010600019250")
            let tls = ["--tls-ca", certs.caCert, "--tls-cert", cert, "--tls-key", key]
            let good = try await CLI.run(
                ["simulate", "--gateway", "127.0.0.1:\(port)", "--piles", "1", "--first-id", "32010600019250", "--duration", "1",
                 "--heartbeat", "0.3", "--expect-all-login"] + tls)
            #expect(good.status == 0, "\(good.stdout)\(good.stderr)")
            let other = try await CLI.run(
                ["simulate", "--gateway", "127.0.0.1:\(port)", "--piles", "1", "--first-id", "32010600019251", "--duration", "1",
                 "--expect-all-login"] + tls)
            #expect(other.status != 0)
            #expect(gw.counters.refusedCertificateMismatch.load(ordering: .relaxed) >= 1)
            let bad = try await CLI.run(["simulate", "--gateway", "127.0.0.1:\(port)", "--tls-cert", cert])
            #expect(bad.status != 0 && bad.stderr.contains("--tls-cert and --tls-key need --tls-ca"), "\(bad.stderr)")
        }
    }

    @Test("a connection the gateway refuses at admission on the TLS port is counted as refused, not as a handshake failure")
    func admissionIsNotAHandshakeFailure() async throws {
        let certs = try TestCertificates.make(clients: [], ellipticCurve: true)
        defer { certs.remove() }
        try await Self.tlsGateway(certs, { $0.maxConnectionsPerAddress = 1 }) { gw, port in
            let first = try await RawClient.connect(port: port)
            #expect(await gw.eventually { gw.counters.connections.load(ordering: .relaxed) == 1 })
            let second = try await RawClient.connect(port: port)
            #expect(await gw.eventually { second.isClosed })
            #expect(gw.counters.refused[.maxConnectionsPerAddress]?.load(ordering: .relaxed) == 1)
            await first.close()
            #expect(await gw.eventually { gw.counters.connections.load(ordering: .relaxed) == 0 })
            let failures = gw.counters.snapshot().tlsHandshakeFailures
            #expect(failures.values.reduce(0, +) == 1 && failures["closed"] == 1, "only the client that left: \(failures)")
        }
    }

    @Test("pile TLS settings: certificate and key go together, a client CA needs them, a PEM that does not load stops start-up naming it")
    func settings() async throws {
        var config = GatewayConfiguration()
        config.pileTLSCertificate = "/x.pem"
        #expect(throws: ConfigurationError.self) { try config.validate() }
        config = GatewayConfiguration()
        config.pileTLSClientCA = "/ca.pem"
        #expect(throws: ConfigurationError.self) { try config.validate() }
        let file = NSTemporaryDirectory() + "pile-tls-\(UUID().uuidString).json"
        try #"{"pileTLSIdentityField": "OU", "pileTLSPort": 9443}"#.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let loaded = try GatewayConfiguration.load(file: file, environment: [:])
        #expect(loaded.pileTLSIdentityField == .organizationalUnit && loaded.pileTLSPort == 9443)
        #expect(throws: ConfigurationError.self) {
            try GatewayConfiguration.load(file: nil, environment: ["PILEGATE_PILE_TLSIDENTITY_FIELD": "serial"])
        }
        do {
            try await withGateway({ $0.pileTLSCertificate = "/nonexistent/pile.pem"; $0.pileTLSKey = "/nonexistent/pile.key" }) { _ in }
            Issue.record("a gateway started with a missing pileTLSCertificate")
        } catch {
            #expect("\(error)".contains("cannot load pileTLSCertificate /nonexistent/pile.pem"), "\(error)")
        }
    }
}
