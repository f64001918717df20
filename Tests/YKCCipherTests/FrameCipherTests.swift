import OpenSSLTestSupport
import Testing

@testable import YKCCipher

/// `FrameCipher` against the `openssl` command line, plus every way bad input is refused.
@Suite("FrameCipher")
struct FrameCipherTests {
    static let key24 = "0123456789abcdeffedcba987654321089abcdef01234567"
    static let key16 = "0123456789abcdeffedcba9876543210"
    static let ivHex = "a1b2c3d4e5f60718"

    /// Real body shapes: empty, shorter than a block, exactly a block, a heartbeat (9 bytes),
    /// several blocks, and the longest body PKCS#7 can still fit in a frame (247 bytes).
    static let plaintexts: [[UInt8]] = [
        [],
        [0x42],
        [0x32, 0x01, 0x06, 0x00, 0x01, 0x92, 0x36, 0x01],
        [0x32, 0x01, 0x06, 0x00, 0x01, 0x92, 0x36, 0x01, 0x00],
        Array(0..<30),
        (0..<247).map { UInt8(truncatingIfNeeded: $0 &* 7) },
    ]

    struct Case: CustomTestStringConvertible, Sendable {
        var mode: FrameCipher.Mode
        var padding: FrameCipher.Padding
        var keyHex: String
        var ivHex: String?
        /// The `openssl enc` cipher that does the same: `des-ede*` is the 2-key K1K2K1 form, so it
        /// also checks the key expansion independently.
        var openSSLCipher: String {
            let base = keyHex.count == 32 ? "des-ede" : "des-ede3"
            return mode == .cbc ? base + "-cbc" : base
        }
        var testDescription: String {
            "\(mode.rawValue)/\(padding.rawValue)/\(keyHex.count / 2)-byte key"
                + (ivHex == nil ? "" : "/iv")
        }
    }

    static let cases: [Case] = {
        var all: [Case] = []
        for mode in FrameCipher.Mode.allCases {
            for padding in FrameCipher.Padding.allCases {
                for key in [key16, key24] {
                    all.append(Case(mode: mode, padding: padding, keyHex: key, ivHex: nil))
                    if mode == .cbc {
                        all.append(Case(mode: mode, padding: padding, keyHex: key, ivHex: ivHex))
                    }
                }
            }
        }
        return all
    }()

    @Test("matches openssl enc in both directions", arguments: cases)
    func matchesOpenSSL(_ c: Case) throws {
        let cipher = try FrameCipher(hexKey: c.keyHex, mode: c.mode, padding: c.padding, hexIV: c.ivHex)
        for plain in Self.plaintexts where !(c.padding == .pkcs7 && plain.count > 247) {
            // openssl has no zero padding: hand it the zero-padded body with -nopad.
            let padded = c.padding == .zero && plain.count % 8 != 0
                ? plain + [UInt8](repeating: 0, count: 8 - plain.count % 8) : plain
            let iv = c.mode == .cbc ? (c.ivHex ?? "0000000000000000") : nil
            let reference = try OpenSSLCommand.enc(
                c.openSSLCipher, keyHex: c.keyHex, ivHex: iv, noPad: c.padding == .zero, input: padded)

            let ours = try cipher.encrypt(plain)
            #expect(ours == reference, "encrypt \(plain.count) bytes")
            #expect(ours.count % 8 == 0)
            #expect(try cipher.decrypt(reference) == padded, "decrypt openssl's \(reference.count) bytes")
            if !reference.isEmpty {
                let back = try OpenSSLCommand.enc(
                    c.openSSLCipher, decrypt: true, keyHex: c.keyHex, ivHex: iv, noPad: c.padding == .zero,
                    input: ours)
                #expect(back == padded, "openssl decrypts ours")
            }
        }
    }

    @Test("a 16-byte key is the 24-byte key K1K2K1")
    func twoKeyExpansion() throws {
        let short = try FrameCipher(hexKey: Self.key16, mode: .cbc, padding: .pkcs7)
        let long = try FrameCipher(hexKey: Self.key16 + Self.key16.prefix(16), mode: .cbc, padding: .pkcs7)
        #expect(short == long)
        #expect(short.fingerprint == long.fingerprint)
        #expect(try short.encrypt(Array(0..<20)) == long.encrypt(Array(0..<20)))
    }

    @Test("fingerprint is the start of SHA-256 over the 24-byte key, as openssl dgst computes it")
    func fingerprint() throws {
        let cipher = try FrameCipher(hexKey: Self.key24)
        let key = try #require(FrameCipher.bytes(fromHex: Self.key24))
        let digest = try OpenSSLCommand.sha256(key)
        #expect(KeyFingerprint.sha256(key) == digest)
        let expected = digest.prefix(2).map { KeyFingerprint.hex($0) }.joined()
        #expect(cipher.fingerprint == expected)
        #expect(cipher.fingerprint.count == 4)
    }

    @Test("the key never appears in descriptions or errors")
    func keyNotPrinted() throws {
        let cipher = try FrameCipher(hexKey: Self.key24, mode: .cbc, padding: .zero, hexIV: Self.ivHex)
        for text in [cipher.description, cipher.debugDescription, String(describing: cipher), "\(cipher)"] {
            #expect(!text.lowercased().contains("0123456789abcdef"))
            #expect(!text.lowercased().contains("01 23 45"))
            #expect(text.contains(cipher.fingerprint))
        }
        let errors: [FrameCipherError] = [
            .keyLength(3), .notHex(field: "key"), .degenerateKey, .ivLength(2), .ivWithECB,
            .ciphertextLength(9), .plaintextTooLong(300), .badPadding, .libcrypto("x"),
        ]
        for error in errors { #expect(!error.description.isEmpty) }
    }

    @Test("a wrong key is caught by the PKCS#7 check")
    func wrongKey() throws {
        let right = try FrameCipher(hexKey: Self.key24, mode: .cbc)
        let wrong = try FrameCipher(hexKey: "1123456789abcdeffedcba987654321089abcdef01234567", mode: .cbc)
        let ciphertext = try right.encrypt(Array("heartbeat body".utf8))
        #expect(throws: FrameCipherError.badPadding) { try wrong.decrypt(ciphertext) }
        // Wrong mode or IV with the right key is caught the same way.
        let ecb = try FrameCipher(hexKey: Self.key24, mode: .ecb)
        #expect(throws: FrameCipherError.badPadding) { try ecb.decrypt(ciphertext) }
    }

    @Test("garbage of every block length decrypts or fails with a typed error, never traps")
    func garbage() throws {
        var random = SplitMix(seed: 12)
        for padding in FrameCipher.Padding.allCases {
            for mode in FrameCipher.Mode.allCases {
                let cipher = try FrameCipher(hexKey: Self.key16, mode: mode, padding: padding)
                var refused = 0
                for _ in 0..<500 {
                    let blocks = Int(random.next() % 31) + 1
                    let bytes = (0..<blocks * 8).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                    do {
                        let plain = try cipher.decrypt(bytes)
                        #expect(plain.count <= bytes.count)
                    } catch {
                        #expect(error == .badPadding)
                        refused += 1
                    }
                }
                // Random bytes rarely end in valid PKCS#7; zero padding cannot tell.
                #expect(padding == .zero ? refused == 0 : refused > 400)
            }
        }
    }

    @Test("bodies of the wrong length are refused", arguments: [0, 1, 7, 9, 15, 249, 256, 1000])
    func badCiphertextLength(_ length: Int) throws {
        let cipher = try FrameCipher(hexKey: Self.key24, mode: .cbc, padding: .pkcs7)
        #expect(throws: FrameCipherError.ciphertextLength(length)) {
            try cipher.decrypt([UInt8](repeating: 0x5A, count: length))
        }
        let zero = try FrameCipher(hexKey: Self.key24, mode: .ecb, padding: .zero)
        if length == 0 {
            #expect(try zero.decrypt([]) == [])
        } else {
            #expect(throws: FrameCipherError.ciphertextLength(length)) {
                try zero.decrypt([UInt8](repeating: 0x5A, count: length))
            }
        }
    }

    @Test("a body too long for one frame is refused before encrypting")
    func plaintextTooLong() throws {
        let pkcs7 = try FrameCipher(hexKey: Self.key24)
        #expect(try pkcs7.encrypt([UInt8](repeating: 1, count: 247)).count == 248)
        #expect(throws: FrameCipherError.plaintextTooLong(248)) { try pkcs7.encrypt([UInt8](repeating: 1, count: 248)) }
        let zero = try FrameCipher(hexKey: Self.key24, padding: .zero)
        #expect(try zero.encrypt([UInt8](repeating: 1, count: 248)).count == 248)
        #expect(throws: FrameCipherError.plaintextTooLong(249)) { try zero.encrypt([UInt8](repeating: 1, count: 249)) }
    }

    @Test("bad keys and IVs are refused with the reason")
    func badKeysAndIVs() {
        #expect(throws: FrameCipherError.keyLength(8)) { try FrameCipher(hexKey: "0123456789abcdef") }
        #expect(throws: FrameCipherError.keyLength(32)) { try FrameCipher(key: [UInt8](repeating: 1, count: 32)) }
        #expect(throws: FrameCipherError.keyLength(0)) { try FrameCipher(hexKey: "") }
        #expect(throws: FrameCipherError.notHex(field: "key")) { try FrameCipher(hexKey: String(Self.key24.dropLast())) }
        #expect(throws: FrameCipherError.notHex(field: "key")) { try FrameCipher(hexKey: "zz" + Self.key24.dropFirst(2)) }
        #expect(throws: FrameCipherError.notHex(field: "iv")) {
            try FrameCipher(hexKey: Self.key24, mode: .cbc, hexIV: "xyz")
        }
        #expect(throws: FrameCipherError.ivLength(4)) {
            try FrameCipher(hexKey: Self.key24, mode: .cbc, hexIV: "00112233")
        }
        #expect(throws: FrameCipherError.ivWithECB) {
            try FrameCipher(hexKey: Self.key24, mode: .ecb, hexIV: Self.ivHex)
        }
        // K1 = K2 (the whole key repeated) or K2 = K3 collapses to single DES.
        #expect(throws: FrameCipherError.degenerateKey) {
            try FrameCipher(hexKey: "0123456789abcdef0123456789abcdef")
        }
        #expect(throws: FrameCipherError.degenerateKey) {
            try FrameCipher(hexKey: "0123456789abcdeffedcba9876543210fedcba9876543210")
        }
        #expect(FrameCipher.bytes(fromHex: "0aFf") == [0x0A, 0xFF])
    }
}

/// A deterministic generator so the garbage test reproduces.
struct SplitMix {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
