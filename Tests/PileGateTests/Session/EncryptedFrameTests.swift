import Foundation
import NIOCore
import OpenSSLTestSupport
@testable import PileGate
import PileSim
import Testing
import YKC
import YKCCipher

/// Encrypted frames (flag 0x01) end to end over loopback: keys set through the admin API, a
/// simulated pile that encrypts every frame, refusals counted where an operator looks.
@Suite("Encrypted frames")
struct EncryptedFrameTests {
    static let key = "0123456789abcdeffedcba987654321089abcdef01234567"
    static let iv = "a1b2c3d4e5f60718"

    @Test(
        "a pile that encrypts logs in, heartbeats and answers a command; everything to it is encrypted",
        arguments: [
            (FrameCipher.Mode.cbc, FrameCipher.Padding.pkcs7, Optional(iv)),
            (FrameCipher.Mode.ecb, FrameCipher.Padding.zero, nil),
        ])
    func roundTrip(mode: FrameCipher.Mode, padding: FrameCipher.Padding, iv: String?) async throws {
        let id = "55010600000700"
        try await withHub { gw, _ in
            var body = #"{"key":"\#(Self.key)","mode":"\#(mode.rawValue)","padding":"\#(padding.rawValue)""#
            if let iv { body += #","iv":"\#(iv)""# }
            body += "}"
            let put = try await gw.http("PUT", "/v1/piles/\(id)/key", body: body)
            #expect(put.status == 201)
            let cipher = try FrameCipher(hexKey: Self.key, mode: mode, padding: padding, hexIV: iv)
            #expect(put.object["fingerprint"] as? String == cipher.fingerprint)
            #expect(!put.body.contains(Self.key))

            let pile = try await gw.pile(id) {
                $0.frameCipher = cipher
                $0.requestBillingModel = false
            }
            try await pile.waitForLogin()
            let state = try await pile.waitUntil(timeout: .seconds(5)) { s in s.guns.allSatisfy { $0.heartbeatsAcked >= 2 } }
            #expect(state.undecryptableFrames == 0)
            #expect(state.framesDecrypted >= 5)  // 0x02 + two 0x04 per gun

            let command = try await gw.http("POST", "/v1/piles/\(id)/commands/reboot", body: #"{"when":"immediately"}"#)
            #expect(command.status == 200)
            #expect(((command.object["reply"] as? [String: Any])?["data"] as? [String: Any])?["result"] as? String == "succeeded")

            // What went over the wire to the pile was encrypted, what came in was decrypted.
            let received = await pile.receivedFrames()
            #expect(received.contains { $0.code == 0x92 })
            let counters = gw.counters
            #expect(counters.encryptedIn.load(ordering: .relaxed) >= 6)
            #expect(counters.encryptedOut.load(ordering: .relaxed) >= 6)
            #expect(counters.refusedEncryptedNoKey.load(ordering: .relaxed) == 0)
            #expect(counters.refusedUndecryptable.load(ordering: .relaxed) == 0)
            #expect(counters.undecoded["encrypted"]?.load(ordering: .relaxed) == 0)
            await pile.stop()
        }
    }

    @Test("the gateway answers ciphertext made by the openssl command line, encrypted the same way")
    func opensslCiphertext() async throws {
        let id = "55010600000701"
        try await withGateway { gw in
            #expect(try await gw.http("PUT", "/v1/piles/\(id)/key", body: #"{"key":"\#(Self.key)","mode":"cbc","iv":"\#(Self.iv)"}"#).status == 201)
            let client = try await RawClient.connect(port: gw.pilePort)
            // Login and heartbeat bodies encrypted by `openssl enc`, not by pilegate.
            for plain in [Frames.login(id, sequence: 0), Frames.heartbeat(id, gun: 1, sequence: 1)] {
                let sealed = try OpenSSLCommand.enc(
                    "des-ede3-cbc", keyHex: Self.key, ivHex: Self.iv, noPad: false, input: Array(plain.body.readableBytesView))
                let frame = YKCFrame(sequence: plain.sequence, encryption: 0x01, code: plain.code, body: ByteBuffer(bytes: sealed))
                try await client.send(frame)
            }
            #expect(await gw.eventually { Frames.parse(client.receivedBytes).count >= 2 })
            let replies = Frames.parse(client.receivedBytes)
            #expect(replies.map(\.code) == [0x02, 0x04])
            for reply in replies {
                #expect(reply.encryption == 0x01)
                let plain = try OpenSSLCommand.enc(
                    "des-ede3-cbc", decrypt: true, keyHex: Self.key, ivHex: Self.iv, noPad: false,
                    input: Array(reply.body.readableBytesView))
                let message = YKCMessage.decode(code: reply.code, body: ByteBuffer(bytes: plain))
                switch message {
                case .loginReply(let r): #expect(r.result == .accepted)
                case .heartbeatReply(let r): #expect(r.pileId.description == id)
                default: Issue.record("unexpected reply \(message)")
                }
            }
            await client.close()
        }
    }

    @Test("keys are never shown: GET gives the fingerprint, DELETE removes, bad keys are refused")
    func keyAPI() async throws {
        try await withGateway { gw in
            let path = "/v1/piles/55010600000702/key"
            #expect(try await gw.http("GET", path).status == 404)
            #expect(try await gw.http("PUT", path, body: #"{"key":"\#(Self.key)","mode":"cbc"}"#).status == 201)
            let again = try await gw.http("PUT", path, body: #"{"key":"\#(Self.key)","mode":"ecb","padding":"zero"}"#)
            #expect(again.status == 200)
            let get = try await gw.http("GET", path)
            #expect(get.status == 200)
            #expect(get.object["mode"] as? String == "ecb")
            #expect(get.object["padding"] as? String == "zero")
            #expect(get.object["keyBytes"] as? Int == 24)
            #expect((get.object["fingerprint"] as? String)?.count == 4)
            #expect(!get.body.lowercased().contains("0123456789abcdef"))
            let page = try await gw.http("GET", "/v1/piles/55010600000702")
            #expect(!page.body.lowercased().contains("0123456789abcdef"))

            for (bad, code) in [
                (#"{"key":"0123"}"#, "invalid_key"), (#"{"key":"zz"}"#, "invalid_key"),
                (#"{"key":"\#(Self.key)","mode":"ofb"}"#, "invalid_key"),
                (#"{"key":"\#(Self.key)","iv":"\#(Self.iv)"}"#, "invalid_key"),  // IV with ECB
                (#"{"key":"0123456789abcdef0123456789abcdef"}"#, "invalid_key"),  // single DES
                (#"{"mode":"cbc"}"#, "invalid_key"), ("{bad", "invalid_json"), ("[1]", "invalid_json"),
            ] {
                let r = try await gw.http("PUT", path, body: bad)
                #expect(r.status == 400, "\(bad)")
                #expect(r.object["error"] as? String == code, "\(bad)")
            }
            #expect(try await gw.http("PUT", path, body: String(repeating: " ", count: 5000)).status == 413)
            #expect(try await gw.http("GET", path).object["mode"] as? String == "ecb", "a refused PUT changes nothing")
            #expect(try await gw.http("DELETE", path).status == 200)
            #expect(try await gw.http("DELETE", path).status == 404)
            #expect(try await gw.http("GET", path).status == 404)
            #expect(try await gw.http("PUT", "/v1/piles/12x/key", body: #"{"key":"\#(Self.key)"}"#).status == 400)
        }
    }

    @Test("keys survive a restart: they live in the registry database")
    func keysPersist() async throws {
        let directory = NSTemporaryDirectory() + "pilegate-keys-" + UUID().uuidString  // not "pilegate-test-": stop() would remove it
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await withGateway({ $0.dataDirectory = directory }) { gw in
            let put = try await gw.http("PUT", "/v1/piles/55010600000703/key", body: #"{"key":"\#(Self.key)","mode":"cbc","iv":"\#(Self.iv)"}"#)
            #expect(put.status == 201)
        }
        try await withGateway({ $0.dataDirectory = directory }) { gw in
            let view = try await gw.http("GET", "/v1/piles/55010600000703/key")
            #expect(view.object["mode"] as? String == "cbc")
            #expect(view.object["customIV"] as? Bool == true)
            let cipher = try FrameCipher(hexKey: Self.key, mode: .cbc, hexIV: Self.iv)
            #expect(gw.gateway.context.keys.cipher(for: PileID("55010600000703") ?? PileID(raw: 0)) == cipher)
        }
    }

    @Test("an encrypted frame without a key is refused, counted in stats and metrics, and the pile is not logged in")
    func refusedWithoutKey() async throws {
        let id = "55010600000704"
        try await withGateway { gw in
            let cipher = try FrameCipher(hexKey: Self.key)
            // No key at all: the encrypted login cannot be opened.
            let pile = try await gw.pile(id) { $0.frameCipher = cipher }
            await #expect(throws: (any Error).self) { try await pile.waitForLoginResult(timeout: .milliseconds(500)) }
            await pile.stop()
            #expect(gw.counters.refusedEncryptedNoKey.load(ordering: .relaxed) >= 1)
            #expect(gw.counters.loginsAccepted.load(ordering: .relaxed) == 0)
            let stats = try await gw.http("GET", "/v1/stats")
            #expect(((stats.object["counters"] as? [String: Any])?["refusedEncryptedNoKey"] as? Int ?? 0) >= 1)
            let metrics = try await gw.http("GET", "/metrics")
            #expect(metrics.body.contains(#"pilegate_frames_refused_total{reason="encrypted_no_key"}"#))

            // A key for another pile does not open this pile's login.
            #expect(try await gw.http("PUT", "/v1/piles/55010600000799/key", body: #"{"key":"\#(Self.key)"}"#).status == 201)
            let again = try await gw.pile(id) { $0.frameCipher = cipher }
            await #expect(throws: (any Error).self) { try await again.waitForLoginResult(timeout: .milliseconds(500)) }
            await again.stop()
            #expect(gw.counters.loginsAccepted.load(ordering: .relaxed) == 0)
        }
    }

    @Test("after login: a removed key refuses the next encrypted frame, a wrong key is undecryptable")
    func refusedAfterLogin() async throws {
        let id = "55010600000705"
        try await withGateway { gw in
            #expect(try await gw.http("PUT", "/v1/piles/\(id)/key", body: #"{"key":"\#(Self.key)","mode":"cbc"}"#).status == 201)
            let cipher = try FrameCipher(hexKey: Self.key, mode: .cbc)
            let pile = try await gw.pile(id, guns: 1) {
                $0.frameCipher = cipher
                $0.requestBillingModel = false
                $0.heartbeatInterval = .seconds(60)
            }
            try await pile.waitForLogin()
            #expect(try await gw.http("DELETE", "/v1/piles/\(id)/key").status == 200)
            _ = try await pile.send(Heartbeat(pileId: PileID(id) ?? PileID(raw: 0), gun: 1, gunState: .normal))
            #expect(await gw.eventually { gw.counters.refusedEncryptedNoKey.load(ordering: .relaxed) == 1 })

            // A different key now: the pile's frames no longer decrypt (PKCS#7 check fails).
            #expect(try await gw.http("PUT", "/v1/piles/\(id)/key", body: #"{"key":"1123456789abcdeffedcba987654321089abcdef01234567","mode":"cbc"}"#).status == 201)
            _ = try await pile.send(Heartbeat(pileId: PileID(id) ?? PileID(raw: 0), gun: 1, gunState: .normal))
            #expect(await gw.eventually { gw.counters.refusedUndecryptable.load(ordering: .relaxed) == 1 })
            let stats = try await gw.http("GET", "/v1/stats")
            #expect((stats.object["counters"] as? [String: Any])?["refusedUndecryptable"] as? Int == 1)
            await pile.stop()
        }
    }
}
