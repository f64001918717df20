import Foundation
import NATS
import NATSTestSupport
import PileGate
import Testing

/// Cluster mode against a nats-server that requires credentials or TLS: the settings of
/// docs/SECURITY.md ("NATS credentials") reach the client, and secrets stay out of printed settings.
@Suite("Cluster mode: NATS credentials and TLS", .serialized)
struct ClusterNATSSecurityTests {
    @Test("a node joins through a token server; a node with the wrong token is refused and stays out")
    func token() async throws {
        try await ClusterFixture.with(natsConfiguration: "authorization { token: \"cluster-s3cret\" }") { cluster in
            let a = try await cluster.startNode("n1") { $0.natsToken = "cluster-s3cret" }
            #expect(await a.eventually { await a.clusterMembers() == ["n1"] })
            #expect(try await a.clusterStats()["nats"] as? String == "connected")

            let b = try await cluster.startNode("n2") { $0.natsToken = "wrong" }
            // The server refuses every attempt; the node keeps serving its piles and keeps retrying.
            try await Task.sleep(for: .seconds(1))
            #expect(try await b.clusterStats()["nats"] as? String != "connected")
            #expect(try await b.http("GET", "/healthz").status == 200)
            #expect(await a.clusterMembers() == ["n1"])
        }
    }

    @Test("user and password, from the settings or from natsURL")
    func userPassword() async throws {
        let config = "authorization { users: [ { user: \"gw\", password: \"pw-1\" } ] }"
        try await ClusterFixture.with(natsConfiguration: config) { cluster in
            let a = try await cluster.startNode("n1") {
                $0.natsUser = "gw"
                $0.natsPassword = "pw-1"
            }
            let b = try await cluster.startNode("n2") { $0.natsURL = "nats://gw:pw-1@127.0.0.1:\(cluster.nats.port)" }
            #expect(await a.eventually { await a.clusterMembers() == ["n1", "n2"] })
            #expect(await b.eventually { await b.clusterMembers() == ["n1", "n2"] })
        }
    }

    @Test("an NKey user from natsCredentials (a seed file) joins")
    func nkeySeedFile() async throws {
        let key = try NKey(rawSeed: (0..<32).map { UInt8($0 * 3) })
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nk-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let seedFile = directory.appendingPathComponent("node.nk").path
        try "\(key.seed)\n".write(toFile: seedFile, atomically: true, encoding: .utf8)
        let config = "authorization { users = [ { nkey: \"\(key.publicKey)\" } ] }"
        try await ClusterFixture.with(natsConfiguration: config) { cluster in
            let a = try await cluster.startNode("n1") { $0.natsCredentials = seedFile }
            #expect(await a.eventually { await a.clusterMembers() == ["n1"] })
            #expect(try await a.clusterStats()["nats"] as? String == "connected")
        }
    }

    @Test("mutual TLS to NATS: natsTLSCA verifies the server, natsTLSCertificate/natsTLSKey identify the node")
    func mutualTLS() async throws {
        let certs = try TestCertificates.make(clients: ["node"], ellipticCurve: true)
        defer { certs.remove() }
        let config = """
            tls {
              cert_file: "\(certs.serverCert)"
              key_file: "\(certs.serverKey)"
              ca_file: "\(certs.caCert)"
              verify: true
            }
            """
        try await ClusterFixture.with(natsConfiguration: config) { cluster in
            let a = try await cluster.startNode("n1") {
                $0.natsTLSCA = certs.caCert
                $0.natsTLSCertificate = certs.client("node").cert
                $0.natsTLSKey = certs.client("node").key
            }
            #expect(await a.eventually { await a.clusterMembers() == ["n1"] })
            // Without a client certificate the server refuses the node.
            let b = try await cluster.startNode("n2") { $0.natsTLSCA = certs.caCert }
            try await Task.sleep(for: .seconds(1))
            #expect(try await b.clusterStats()["nats"] as? String != "connected")
        }
    }

    @Test("the settings become client options; bad combinations and unreadable files are refused before start")
    func options() throws {
        var config = GatewayConfiguration()
        config.nodeId = "n1"
        config.natsURL = "nats://127.0.0.1:4222"
        config.natsToken = "t0k"
        #expect(try config.natsClientOptions().authentication == .token("t0k"))
        #expect(try config.natsClientOptions().tls == nil)
        config.natsToken = ""
        config.natsUser = "gw"
        config.natsPassword = "pw"
        #expect(try config.natsClientOptions().authentication == .userPassword(user: "gw", password: "pw"))
        try config.validate()

        config.natsToken = "t0k"
        #expect(throws: ConfigurationError.self) { try config.validate() }  // two kinds of credentials
        config.natsToken = ""
        config.natsPassword = ""
        #expect(throws: ConfigurationError.self) { try config.validate() }  // user without password
        config.natsUser = ""
        config.natsTLSCertificate = "/nonexistent/cert.pem"
        #expect(throws: ConfigurationError.self) { try config.validate() }  // certificate without key
        config.natsTLSKey = "/nonexistent/key.pem"
        try config.validate()
        #expect { _ = try config.natsClientOptions() } throws: { error in
            (error as? ConfigurationError)?.key == "natsTLSCertificate"
        }
        config.natsTLSCertificate = ""
        config.natsTLSKey = ""
        config.natsCredentials = "/nonexistent/node.creds"
        #expect { _ = try config.natsClientOptions() } throws: { error in
            (error as? ConfigurationError)?.key == "natsCredentials"
        }

        // Without natsURL the settings would do nothing: refused rather than ignored.
        var standalone = GatewayConfiguration()
        standalone.natsToken = "t0k"
        #expect { try standalone.validate() } throws: { error in (error as? ConfigurationError)?.key == "natsToken" }
        let env = ["PILEGATE_NATS_TOKEN": "t0k"]
        #expect(throws: ConfigurationError.self) { _ = try GatewayConfiguration.load(file: nil, environment: env) }
        let loaded = try GatewayConfiguration.load(
            file: nil, environment: ["PILEGATE_NATS_URL": "nats://127.0.0.1:4222", "PILEGATE_NATS_TOKEN": "t0k"])
        #expect(loaded.natsToken == "t0k")
    }

    @Test("secrets never show in the printed configuration or in setting errors")
    func redaction() throws {
        var config = GatewayConfiguration()
        config.natsURL = "nats://gw:url-s3cret@10.0.0.5:4222,nats://tok-s3cret@10.0.0.6:4222,tls://10.0.0.7:4222"
        config.natsToken = "token-s3cret"
        config.natsPassword = "password-s3cret"
        config.natsUser = "gw"
        let printed = config.jsonDescription
        #expect(!printed.contains("s3cret"))
        #expect(printed.contains(#""natsToken": "<redacted>""#) && printed.contains(#""natsPassword": "<redacted>""#))
        #expect(printed.contains("nats://gw:<redacted>@10.0.0.5:4222,nats://<redacted>@10.0.0.6:4222,tls://10.0.0.7:4222"))
        #expect(printed.contains(#""natsUser": "gw""#))
        // Unset secrets print as empty, so an operator sees they are not set.
        #expect(GatewayConfiguration().jsonDescription.contains(#""natsToken": """#))

        // A malformed URL holding a password is refused without repeating it.
        #expect {
            _ = try GatewayConfiguration.load(file: nil, environment: ["PILEGATE_NATS_URL": "http://gw:url-s3cret@x:1"])
        } throws: { error in
            !"\(error)".contains("s3cret") && (error as? ConfigurationError)?.key == "natsURL"
        }
    }
}
