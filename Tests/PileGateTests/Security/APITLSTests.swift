import Foundation
import HummingbirdWSClient
import Logging
import NIOSSL
import PileGate
import Testing

/// TLS and mutual TLS on the API port, with certificates made by the `openssl` command line and
/// real TLS clients (raw HTTP/1.1 and the WebSocket client a backend uses).
@Suite("Security: API TLS and mutual TLS")
struct APITLSTests {
    @Test("mutual TLS: no client certificate or one from another CA is refused at the handshake; a valid one is accepted and its CN maps to scopes")
    func mutualTLS() async throws {
        let certs = try TestCertificates.make(clients: ["billing", "other"])
        defer { certs.remove() }
        let config = AssembledGateway.config {
            $0.apiTLSCertificate = certs.serverCert
            $0.apiTLSKey = certs.serverKey
            $0.apiClientCA = certs.caCert
            $0.apiClientCertificateScopes = ["CN=billing": ["admin:read", "events:subscribe"]]
        }
        try await AssembledGateway.with(config) { gw async throws in
            let port = gw.apiPort
            // Refused at the handshake: nothing at all comes back, not even a status line.
            for (label, tls) in [
                ("no client certificate", try TLSProbe.client(ca: certs.caCert)),
                ("a rogue CA's certificate", try TLSProbe.client(ca: certs.caCert, cert: certs.client("rogue").cert, key: certs.client("rogue").key)),
            ] {
                var refused = false
                do {
                    let answer = try await TLSProbe.request(port: port, tls: tls, "/healthz")
                    refused = answer.raw.isEmpty
                } catch {
                    refused = true
                }
                #expect(refused, "\(label) must fail the handshake")
            }
            let billing = try TLSProbe.client(ca: certs.caCert, cert: certs.client("billing").cert, key: certs.client("billing").key)
            #expect(try await TLSProbe.request(port: port, tls: billing, "/healthz").status == 200)
            #expect(try await TLSProbe.request(port: port, tls: billing, "/v1/stats").status == 200, "CN=billing has admin:read")
            #expect(try await TLSProbe.request(port: port, tls: billing, method: "PUT", "/v1/piles/1").status == 403, "but not admin:write")
            // A valid certificate without a mapping needs a token on top.
            let other = try TLSProbe.client(ca: certs.caCert, cert: certs.client("other").cert, key: certs.client("other").key)
            #expect(try await TLSProbe.request(port: port, tls: other, "/v1/stats").status == 401)
            let token = try await gw.gateway.auth.tokens.create(APIToken(name: "ops", scopes: [.adminRead])).secret
            #expect(try await TLSProbe.request(port: port, tls: other, "/v1/stats", token: token).status == 200)

            // The CLI with --cacert/--cert/--key (or the PILEGATE_* variables).
            let api = "https://127.0.0.1:\(port)"
            let (billingCert, billingKey) = certs.client("billing")
            let stats = try await CLI.run(["stats", "--json", "--api", api, "--cacert", certs.caCert, "--cert", billingCert, "--key", billingKey])
            #expect(stats.status == 0 && stats.json?["node"]?.stringValue == "sec-node", "\(stats.stderr)")
            let exe = try #require(CLI.executable)
            let viaEnv = try await CLI.spawn(
                exe, ["tokens", "list"],
                environment: ["PILEGATE_API": api, "PILEGATE_CACERT": certs.caCert, "PILEGATE_CERT": billingCert, "PILEGATE_KEY": billingKey])
            #expect(viaEnv.status == 0 && viaEnv.stdout.contains("ops"), "\(viaEnv.stdout)\(viaEnv.stderr)")
            let noCert = try await CLI.run(["stats", "--json", "--api", api, "--cacert", certs.caCert])
            #expect(noCert.status == 2 && noCert.stderr.hasPrefix("pilegate: cannot reach the gateway at \(api)"), "\(noCert.stderr)")
            let forbidden = try await CLI.run(["piles", "kick", "1", "--api", api, "--cacert", certs.caCert, "--cert", billingCert, "--key", billingKey])
            #expect(forbidden.status == 1 && forbidden.stderr.contains("403"), "\(forbidden.stderr)")

            let tail = try await CLI.run([
                "tail", "--api", "https://localhost:\(port)", "--cacert", certs.caCert, "--cert", billingCert, "--key", billingKey,
                "--service", "billing", "--duration", "0.5", "--stats-interval", "0.2",
            ])
            #expect(tail.status == 0, "tail over wss with a client certificate: \(tail.stderr)")

            // A backend over wss:// with its certificate subscribes (events:subscribe from its CN).
            let subscribed = try await Self.subscribe(port: port, tls: billing)
            #expect(subscribed.contains(#""type":"subscribed""#), "\(subscribed)")
            let refused = (try? await Self.subscribe(port: port, tls: try TLSProbe.client(ca: certs.caCert))) ?? ""
            #expect(!refused.contains("subscribed"), "no certificate, no WebSocket")
        }
    }

    @Test("TLS without client certificates: HTTPS works, plain HTTP does not; a bad PEM path stops start-up naming the setting; mutual TLS allows a non-loopback address")
    func serverTLS() async throws {
        let certs = try TestCertificates.make(clients: [])
        defer { certs.remove() }
        try await AssembledGateway.with(AssembledGateway.config {
            $0.apiTLSCertificate = certs.serverCert
            $0.apiTLSKey = certs.serverKey
        }) { gw async throws in
            #expect(try await TLSProbe.request(port: gw.apiPort, tls: try TLSProbe.client(ca: certs.caCert), "/v1/stats").status == 200)
            let plain = try? await gw.http("GET", "/v1/stats")
            #expect(plain?.status != 200, "plain HTTP must not be served on the TLS port")
        }
        do {
            let gw = try await AssembledGateway.start(AssembledGateway.config {
                $0.apiTLSCertificate = certs.directory + "/missing.pem"
                $0.apiTLSKey = certs.serverKey
            })
            await gw.stop()
            Issue.record("started with a missing certificate")
        } catch {
            #expect("\(error)".hasPrefix("cannot load apiTLSCertificate \(certs.directory)/missing.pem"), "\(error)")
        }
        // Client certificates are authentication: 0.0.0.0 is allowed without tokens.
        try await AssembledGateway.with(AssembledGateway.config {
            $0.apiHost = "0.0.0.0"
            $0.apiTLSCertificate = certs.serverCert
            $0.apiTLSKey = certs.serverKey
            $0.apiClientCA = certs.caCert
        }) { gw async throws in
            #expect(gw.apiPort > 0)
        }
    }

    /// Opens `wss://localhost:port/v1/events` (the server certificate names localhost; TLS has no SNI for an IP), subscribes, returns the first message (or "").
    static func subscribe(port: Int, tls: TLSConfiguration) async throws -> String {
        var logger = Logger(label: "tls-backend")
        logger.logLevel = .critical
        let first = ReceivedText()
        let client = WebSocketClient(url: "wss://localhost:\(port)/v1/events", tlsConfiguration: tls, logger: logger) { inbound, outbound, _ in
            try await outbound.write(.text(#"{"type":"subscribe","service":"billing","instance":"b1","events":["*"]}"#))
            for try await message in inbound.messages(maxSize: 1 << 16) {
                if case .text(let text) = message { first.set(text) }
                break
            }
            try await outbound.close(.normalClosure, reason: nil)
        }
        try await client.run()
        return first.value
    }

    final class ReceivedText: @unchecked Sendable {
        private let lock = NSLock()
        private var text = ""
        func set(_ t: String) { lock.withLock { text = t } }
        var value: String { lock.withLock { text } }
    }
}
