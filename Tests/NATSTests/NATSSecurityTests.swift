import Foundation
import NIOCore
import Testing

@testable import NATS
import NATSTestSupport

extension RealServerTests {
    @Suite("NATS auth and TLS against a real nats-server", .timeLimit(.minutes(1)))
    struct NATSSecurityTests {
        @Test("token auth: the right token connects, a wrong one is an authorization violation")
        func token() async throws {
            try await NATSTestServer.with(configuration: "authorization { token: \"s3cret-token\" }") { server in
                let client = try await server.connect { $0.authentication = .token("s3cret-token") }
                #expect(client.serverInfo?.authRequired == true)
                let collector = MessageCollector(try await client.subscribe(to: "t"))
                try client.publish("x", to: "t")
                try await collector.wait(for: 1)
                await client.close()

                await #expect {
                    _ = try await server.connect { $0.authentication = .token("wrong") }
                } throws: { error in
                    if case NATSError.authorizationViolation = error { return true }
                    return false
                }
                // Token in the URL.
                let fromURL = try await NATSClient.connect(url: "nats://s3cret-token@127.0.0.1:\(server.port)")
                try await fromURL.flush()
                await fromURL.close()
            }
        }

        @Test("user and password auth from a config file")
        func userPassword() async throws {
            let config = """
                authorization {
                  users: [
                    { user: "gateway", password: "pw-1" }
                    { user: "other", password: "pw-2" }
                  ]
                }
                """
            try await NATSTestServer.with(configuration: config) { server in
                let client = try await server.connect { $0.authentication = .userPassword(user: "gateway", password: "pw-1") }
                try await client.flush()
                await client.close()
                await #expect {
                    _ = try await server.connect { $0.authentication = .userPassword(user: "gateway", password: "pw-2") }
                } throws: { error in
                    if case NATSError.authorizationViolation = error { return true }
                    return false
                }
                await #expect(throws: NATSError.self) { _ = try await server.connect() }
            }
        }

        @Test("TLS with a CA generated for the test; without the CA the certificate is refused")
        func tls() async throws {
            let pki = try TestPKI()
            defer { pki.remove() }
            let config = """
                tls {
                  cert_file: "\(pki.serverCertificate)"
                  key_file: "\(pki.serverKey)"
                }
                """
            try await NATSTestServer.with(configuration: config) { server in
                let client = try await server.connect { $0.tls = NATSTLSOptions(caFile: pki.caCertificate) }
                #expect(client.serverInfo?.tlsRequired == true)
                let collector = MessageCollector(try await client.subscribe(to: "secure"))
                try client.publish("over tls", to: "secure")
                #expect(try await collector.wait(for: 1).first?.string == "over tls")
                // The server requires TLS, so a client without TLS options still upgrades, and then refuses
                // a certificate it cannot verify against the system roots.
                await #expect(throws: (any Error).self) { _ = try await server.connect() }
                // Reconnect goes through TLS again.
                try await server.restart()
                try await waitUntil { client.status == .connected && client.statistics.reconnects == 1 }
                try client.publish("again", to: "secure")
                try await collector.wait(for: 2)
                await client.close()
            }
        }

        @Test("a client that requires TLS refuses a plain server")
        func tlsRequiredByClient() async throws {
            let pki = try TestPKI()
            defer { pki.remove() }
            try await NATSTestServer.with { server in
                await #expect {
                    _ = try await server.connect { $0.tls = NATSTLSOptions(caFile: pki.caCertificate) }
                } throws: { error in
                    if case NATSError.tlsMismatch = error { return true }
                    return false
                }
            }
        }
    }
}

/// A CA and a server certificate for 127.0.0.1, made with the `openssl` CLI in a temporary directory.
struct TestPKI {
    let directory: URL
    var caCertificate: String { directory.appendingPathComponent("ca.pem").path }
    var serverCertificate: String { directory.appendingPathComponent("server.pem").path }
    var serverKey: String { directory.appendingPathComponent("server-key.pem").path }

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("nats-pki-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let ext = directory.appendingPathComponent("server.ext")
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n".write(
            to: ext, atomically: true, encoding: .utf8
        )
        let d = directory.path
        // EC keys: generated in milliseconds even on a loaded machine (RSA key generation is not).
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        try Self.openssl(["req", "-x509"] + key + ["-nodes", "-days", "2", "-subj", "/CN=pilegate test CA",
                          "-keyout", "\(d)/ca-key.pem", "-out", "\(d)/ca.pem"])
        try Self.openssl(["req"] + key + ["-nodes", "-subj", "/CN=127.0.0.1",
                          "-keyout", "\(d)/server-key.pem", "-out", "\(d)/server.csr"])
        try Self.openssl(["x509", "-req", "-in", "\(d)/server.csr", "-CA", "\(d)/ca.pem", "-CAkey", "\(d)/ca-key.pem",
                          "-CAcreateserial", "-days", "2", "-extfile", ext.path, "-out", "\(d)/server.pem"])
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }

    static func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Bounded: openssl with EC keys takes milliseconds; a stuck one is killed.
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw PKIError.openssl(arguments.joined(separator: " ")) }
    }

    enum PKIError: Error { case openssl(String) }
}
