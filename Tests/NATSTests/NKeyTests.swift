import Foundation
import NIOCore
import Testing

@testable import NATS

/// NKey seeds, public keys, nonce signatures and credentials files, without a server.
@Suite("NKeys and credentials files")
struct NKeyTests {
    /// The example user of the NATS documentation: a seed, its public key, and a nonce signed with it.
    static let documentedSeed = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY"
    static let documentedPublicKey = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"

    @Test("the documented seed gives the documented public key and signature")
    func documentedVector() throws {
        let key = try NKey(seed: Self.documentedSeed)
        #expect(key.role == .user)
        #expect(key.publicKey == Self.documentedPublicKey)
        #expect(key.seed == Self.documentedSeed)
        // Ed25519 signatures are deterministic: the same seed and nonce give the same bytes everywhere.
        let expected = try #require(Data(base64Encoded: "WosANJXgeyxerXFo0twRiMG+/ZjYp1K/46bFeFax705yFTCTjM18jWl01gGYk4KKbadiHd+hP3WgUQ2iLZUAAA=="))
        #expect(try key.sign(Array("DhXdTMAeiHhLDig".utf8)) == Array(expected))
        let sig = try key.signNonce("DhXdTMAeiHhLDig")
        #expect(!sig.contains("=") && !sig.contains("+") && !sig.contains("/"))
        #expect(NKey.verify(signature: expected, of: Array("DhXdTMAeiHhLDig".utf8), publicKey: key.publicKey))
        #expect(!NKey.verify(signature: expected, of: Array("other".utf8), publicKey: key.publicKey))
    }

    @Test("keys minted from raw bytes round-trip through their seed, for every role")
    func mintedKeys() throws {
        for role in NKey.Role.allCases {
            let key = try NKey(rawSeed: (0..<32).map { UInt8($0) &* 7 &+ role.rawValue }, role: role)
            #expect(key.seed.count == 58 && key.publicKey.count == 56)
            #expect(key.seed.hasPrefix("S"))
            let parsed = try NKey(seed: "  \(key.seed)\n")
            #expect(parsed == key && parsed.role == role && parsed.publicKey == key.publicKey)
        }
        let user = try NKey(rawSeed: Array(repeating: 1, count: 32))
        #expect(user.seed.hasPrefix("SU") && user.publicKey.hasPrefix("U"))
        #expect("\(user)" == "NKey(\(user.publicKey))")  // no seed in logs
    }

    @Test("bad seeds are typed errors that do not echo the seed")
    func badSeeds() throws {
        var typo = Array(Self.documentedSeed)
        typo[10] = typo[10] == "A" ? "B" : "A"
        #expect(throws: NKeyError.invalidChecksum) { try NKey(seed: String(typo)) }
        #expect(throws: NKeyError.notASeed) { try NKey(seed: Self.documentedPublicKey) }
        #expect(throws: NKeyError.invalidEncoding) { try NKey(seed: "SU0189!") }
        #expect(throws: NKeyError.invalidEncoding) { try NKey(seed: "") }
        #expect(throws: NKeyError.invalidChecksum) { try NKey(seed: String(Self.documentedSeed.dropLast(2))) }
        #expect(throws: NKeyError.notASeed) { try NKey(rawSeed: [1, 2, 3]) }
        #expect(!NKeyError.invalidChecksum.description.contains("SUAC"))
        #expect(!NKey.verify(signature: [0], of: [0], publicKey: "garbage"))
    }

    static let jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVIn0.c2ln"

    @Test("a .creds file gives the JWT and the seed; a seed file gives the key; bad files are typed errors")
    func credentialsFiles() throws {
        let creds = """
            -----BEGIN NATS USER JWT-----
            \(Self.jwt)
            ------END NATS USER JWT------

            ************************* IMPORTANT *************************
            NKEY Seed printed below can be used to sign and prove identity.

            -----BEGIN USER NKEY SEED-----
            \(Self.documentedSeed)
            ------END USER NKEY SEED------

            *************************************************************

            """
        let key = try NKey(seed: Self.documentedSeed)
        #expect(try NATSAuthentication.parse(creds) == .credentials(jwt: Self.jwt, nkey: key))
        #expect(try NATSAuthentication.parse(creds.replacingOccurrences(of: "\n", with: "\r\n"))
            == .credentials(jwt: Self.jwt, nkey: key))
        #expect(try NATSAuthentication.parse("# a seed\n\(Self.documentedSeed)\n") == .nkey(key))
        // A creds file with the seed block only is an NKey.
        #expect(try NATSAuthentication.parse("-----BEGIN USER NKEY SEED-----\n\(Self.documentedSeed)\n------END USER NKEY SEED------\n") == .nkey(key))

        #expect(throws: NKeyError.self) { try NATSAuthentication.parse("-----BEGIN NATS USER JWT-----\n\(Self.jwt)\n------END NATS USER JWT------\n") }
        #expect(throws: NKeyError.self) { try NATSAuthentication.parse("hello") }
        #expect(throws: NKeyError.self) { try NATSAuthentication.parse("-----BEGIN NATS USER JWT-----\n\(Self.jwt)\n") }
        #expect(throws: NKeyError.self) {
            try NATSAuthentication.parse(creds.replacingOccurrences(of: Self.jwt, with: "not-a-jwt"))
        }
        #expect(throws: NKeyError.invalidChecksum) {
            try NATSAuthentication.parse(creds.replacingOccurrences(of: Self.documentedSeed, with: String(Self.documentedSeed.dropLast(2)) + "AA"))
        }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("creds-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("user.creds")
        try creds.write(to: file, atomically: true, encoding: .utf8)
        #expect(try NATSAuthentication.fromFile(file.path) == .credentials(jwt: Self.jwt, nkey: key))
        #expect {
            try NATSAuthentication.fromFile(directory.appendingPathComponent("missing.creds").path)
        } throws: { error in
            if case NKeyError.unreadableFile(let path, _) = error { return path.hasSuffix("missing.creds") }
            return false
        }
        let huge = directory.appendingPathComponent("huge.creds")
        try Data(repeating: 65, count: 100_000).write(to: huge)
        #expect(throws: NKeyError.self) { try NATSAuthentication.fromFile(huge.path) }
    }

    @Test("descriptions of credentials never show the secret")
    func redaction() throws {
        let key = try NKey(seed: Self.documentedSeed)
        let all: [NATSAuthentication] = [
            .token("tok-secret"), .userPassword(user: "gw", password: "pw-secret"), .nkey(key),
            .credentials(jwt: Self.jwt, nkey: key),
        ]
        for auth in all {
            let text = "\(auth)"
            #expect(!text.contains("secret") && !text.contains(Self.documentedSeed) && !text.contains(Self.jwt))
        }
        #expect("\(NATSAuthentication.nkey(key))".contains(Self.documentedPublicKey))
    }

    @Test("CONNECT carries the public key or JWT and the nonce's signature")
    func connectFields() throws {
        let key = try NKey(seed: Self.documentedSeed)
        func connect(_ auth: NATSAuthentication, nonce: String?) throws -> [String: Any] {
            var options = NATSClientOptions(servers: [NATSServerAddress(host: "127.0.0.1")])
            options.authentication = auth
            var buffer = ByteBuffer()
            try ClientProtocol.writeConnect(options: options, server: options.servers[0], tls: false, nonce: nonce, into: &buffer)
            let line = String(buffer: buffer)
            #expect(line.hasPrefix("CONNECT {") && line.hasSuffix("}\r\n"))
            let json = Data(line.dropFirst("CONNECT ".count).dropLast().utf8)  // "\r\n" is one Character
            return try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        }
        let nkey = try connect(.nkey(key), nonce: "DhXdTMAeiHhLDig")
        #expect(nkey["nkey"] as? String == Self.documentedPublicKey)
        #expect(nkey["jwt"] == nil)
        let sig = try #require(nkey["sig"] as? String)
        #expect(sig == "WosANJXgeyxerXFo0twRiMG-_ZjYp1K_46bFeFax705yFTCTjM18jWl01gGYk4KKbadiHd-hP3WgUQ2iLZUAAA")

        let creds = try connect(.credentials(jwt: Self.jwt, nkey: key), nonce: "abc")
        #expect(creds["jwt"] as? String == Self.jwt)
        #expect(creds["nkey"] == nil)
        let credsSig = try #require(creds["sig"] as? String)
        var base64 = credsSig.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        let signature = try #require(Data(base64Encoded: base64))
        #expect(NKey.verify(signature: signature, of: Array("abc".utf8), publicKey: key.publicKey))

        // A server that sent no nonce checks no key: nothing to sign.
        let noNonce = try connect(.nkey(key), nonce: nil)
        #expect(noNonce["sig"] == nil && noNonce["nkey"] == nil)
    }
}
