import Foundation
import NATSTestSupport
import NIOCore
import Testing

@testable import NATS

extension RealServerTests {
    @Suite("NKey and .creds authentication against a real nats-server", .timeLimit(.minutes(1)))
    struct NATSCredentialsTests {
        @Test("an NKey user: the server checks the signed nonce; another key is refused")
        func nkey() async throws {
            let key = try NKey(rawSeed: (0..<32).map { UInt8($0) })
            let other = try NKey(rawSeed: (0..<32).map { UInt8(255 - $0) })
            let config = "authorization { users = [ { nkey: \"\(key.publicKey)\" } ] }"
            try await NATSTestServer.with(configuration: config) { server in
                let client = try await server.connect { $0.authentication = .nkey(key) }
                #expect(client.serverInfo?.nonce?.isEmpty == false)
                let collector = MessageCollector(try await client.subscribe(to: "k"))
                try client.publish("signed", to: "k")
                #expect(try await collector.wait(for: 1).first?.string == "signed")
                // The server authorised the connection as the public key (`authorized_user` in /connz).
                let connz = try await server.monitor("connz?auth=true")
                let connections = connz["connections"] as? [[String: Any]] ?? []
                #expect(connections.contains { ($0["authorized_user"] as? String) == key.publicKey }, "\(connections)")

                // Reconnect signs the new server's nonce again.
                try await server.restart()
                try await waitUntil { client.status == .connected && client.statistics.reconnects == 1 }
                try client.publish("again", to: "k")
                try await collector.wait(for: 2)
                await client.close()

                await #expect {
                    _ = try await server.connect { $0.authentication = .nkey(other) }
                } throws: { error in
                    if case NATSError.authorizationViolation = error { return true }
                    return false
                }
                await #expect(throws: NATSError.self) { _ = try await server.connect() }

                // The same key from a seed file.
                let file = server.directory.appendingPathComponent("user.nk")
                try "\(key.seed)\n".write(to: file, atomically: true, encoding: .utf8)
                let seedAuth = try NATSAuthentication.fromFile(file.path)
                let fromFile = try await server.connect { $0.authentication = seedAuth }
                try await fromFile.flush()
                await fromFile.close()
            }
        }

        @Test("operator mode: a .creds file's user JWT and seed connect; a user of an unknown account is refused")
        func operatorMode() async throws {
            let trust = try OperatorTrust()
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("op-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let operatorFile = directory.appendingPathComponent("operator.jwt")
            try trust.operatorJWT.write(to: operatorFile, atomically: true, encoding: .utf8)
            let config = """
                operator: "\(operatorFile.path)"
                resolver: MEMORY
                resolver_preload: {
                  \(trust.account.publicKey): "\(trust.accountJWT)"
                }
                """
            try await NATSTestServer.with(configuration: config, jetStream: false) { server in
                let credsFile = directory.appendingPathComponent("user.creds")
                try OperatorTrust.creds(jwt: trust.userJWT, seed: trust.user.seed)
                    .write(to: credsFile, atomically: true, encoding: .utf8)
                let auth = try NATSAuthentication.fromFile(credsFile.path)
                #expect(auth == .credentials(jwt: trust.userJWT, nkey: trust.user))
                let client = try await server.connect { $0.authentication = auth }
                let collector = MessageCollector(try await client.subscribe(to: "op.>"))
                try client.publish("with jwt", to: "op.1")
                #expect(try await collector.wait(for: 1).first?.string == "with jwt")
                await client.close()

                // A user whose account the server does not trust.
                let stranger = try OperatorTrust()
                await #expect {
                    _ = try await server.connect { $0.authentication = .credentials(jwt: stranger.userJWT, nkey: stranger.user) }
                } throws: { error in
                    if case NATSError.authorizationViolation = error { return true }
                    return false
                }
                // The right JWT signed with the wrong seed.
                await #expect {
                    _ = try await server.connect { $0.authentication = .credentials(jwt: trust.userJWT, nkey: stranger.user) }
                } throws: { error in
                    if case NATSError.authorizationViolation = error { return true }
                    return false
                }
            }
        }
    }
}

/// An operator, an account and a user with their JWTs, minted in the test with `NKey` (what `nsc` does):
/// each JWT is `base64url(header).base64url(claims).base64url(Ed25519 signature by the issuer)`.
struct OperatorTrust {
    let operatorKey: NKey
    let account: NKey
    let user: NKey
    let operatorJWT: String
    let accountJWT: String
    let userJWT: String

    init() throws {
        func random() -> [UInt8] { (0..<32).map { _ in UInt8.random(in: 0...255) } }
        operatorKey = try NKey(rawSeed: random(), role: .operator)
        account = try NKey(rawSeed: random(), role: .account)
        user = try NKey(rawSeed: random(), role: .user)
        operatorJWT = try Self.jwt(
            subject: operatorKey.publicKey, issuer: operatorKey, name: "test-operator",
            nats: ["type": "operator", "version": 2]
        )
        let unlimited: [String: Any] = [
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true, "conn": -1,
            "leaf": -1,
        ]
        accountJWT = try Self.jwt(
            subject: account.publicKey, issuer: operatorKey, name: "test-account",
            nats: ["type": "account", "version": 2, "limits": unlimited]
        )
        userJWT = try Self.jwt(
            subject: user.publicKey, issuer: account, name: "test-user",
            nats: ["type": "user", "version": 2, "pub": [String: Any](), "sub": [String: Any](), "subs": -1, "data": -1,
                   "payload": -1]
        )
    }

    static func jwt(subject: String, issuer: NKey, name: String, nats: [String: Any]) throws -> String {
        let claims: [String: Any] = [
            "jti": NKey.base32Encode((0..<32).map { _ in UInt8.random(in: 0...255) }),
            "iat": Int(Date().timeIntervalSince1970), "iss": issuer.publicKey, "sub": subject, "name": name,
            "nats": nats,
        ]
        let header = NKey.base64URL(Array(#"{"typ":"JWT","alg":"ed25519-nkey"}"#.utf8))
        let body = NKey.base64URL(Array(try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])))
        let signed = "\(header).\(body)"
        return "\(signed).\(NKey.base64URL(try issuer.sign(Array(signed.utf8))))"
    }

    static func creds(jwt: String, seed: String) -> String {
        """
        -----BEGIN NATS USER JWT-----
        \(jwt)
        ------END NATS USER JWT------

        ************************* IMPORTANT *************************
        NKEY Seed printed below can be used to sign and prove identity.
        NKEYs are sensitive and should be treated as secrets.

        -----BEGIN USER NKEY SEED-----
        \(seed)
        ------END USER NKEY SEED------

        *************************************************************

        """
    }
}
