import CLibCrypto

/// Encrypts and decrypts the body of a YKC frame with 3DES (DES-EDE3), as a pile does when it sets
/// the encryption flag to 0x01.
///
/// The protocol names 3DES but no key scheme, mode or padding (docs/PROTOCOL.md, "Encrypted
/// frames"), so every choice a vendor might make is a setting: ECB or CBC (with an IV, zero by
/// default), PKCS#7 or zero padding, a 16-byte (2-key, expanded K1K2K1) or 24-byte (3-key) key.
/// The defaults, ECB with PKCS#7, are what Java's `Cipher.getInstance("DESede")` gives, the most
/// common vendor stack.
///
/// The work is done by the system's OpenSSL libcrypto through its EVP interface (swift-crypto has
/// no 3DES). A value is immutable and `Sendable`; each call uses its own short-lived EVP context,
/// so one cipher may serve a pile's session from any thread. The key is never printed: the
/// `description` shows mode, padding and `fingerprint` only.
public struct FrameCipher: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// Block cipher mode.
    public enum Mode: String, Sendable, Codable, CaseIterable {
        /// Each 8-byte block on its own; no IV.
        case ecb
        /// Cipher block chaining from an 8-byte IV.
        case cbc
    }

    /// How a body is brought to a whole number of 8-byte blocks.
    public enum Padding: String, Sendable, Codable, CaseIterable {
        /// 1–8 bytes each holding the pad length (PKCS#5/#7); removed and checked on decryption.
        case pkcs7
        /// 0–7 zero bytes. Decryption cannot tell them from body bytes, so it returns the padded
        /// length; a receiver trims to the length the frame type needs.
        case zero
    }

    /// The 3DES block size in bytes.
    public static let blockSize = 8
    /// The longest encrypted body a frame can carry: the length byte allows 251 body bytes, and the
    /// largest whole number of blocks within that is 248.
    public static let maximumCiphertextLength = 248

    public let mode: Mode
    public let padding: Padding
    /// First hex digits of SHA-256 over the 24-byte key (see `KeyFingerprint`); safe to show.
    public let fingerprint: String
    /// The 24-byte DES-EDE3 key (a 16-byte key already expanded to K1K2K1).
    private let key: [UInt8]
    /// The 8-byte CBC IV; empty for ECB.
    private let iv: [UInt8]

    /// A cipher from raw key bytes.
    ///
    /// - Parameters:
    ///   - key: 16 bytes (K1K2, used as K1K2K1) or 24 bytes (K1K2K3).
    ///   - iv: the CBC IV, 8 bytes; `nil` means eight zero bytes. Must be `nil` for ECB.
    /// - Throws: `FrameCipherError` for a wrong key or IV length, a key that collapses to single
    ///   DES, or an IV given for ECB.
    public init(key: [UInt8], mode: Mode = .ecb, padding: Padding = .pkcs7, iv: [UInt8]? = nil)
        throws(FrameCipherError)
    {
        let full: [UInt8]
        switch key.count {
        case 16: full = key + key[0..<8]
        case 24: full = key
        default: throw .keyLength(key.count)
        }
        if full[0..<8] == full[8..<16] || full[8..<16] == full[16..<24] {
            throw .degenerateKey
        }
        switch (mode, iv) {
        case (.ecb, nil):
            self.iv = []
        case (.ecb, .some):
            throw .ivWithECB
        case (.cbc, nil):
            self.iv = [UInt8](repeating: 0, count: Self.blockSize)
        case (.cbc, .some(let given)):
            guard given.count == Self.blockSize else { throw .ivLength(given.count) }
            self.iv = given
        }
        self.key = full
        self.mode = mode
        self.padding = padding
        self.fingerprint = KeyFingerprint.of(full)
    }

    /// A cipher from hexadecimal key and IV text, as the admin API and the CLI take them.
    public init(hexKey: String, mode: Mode = .ecb, padding: Padding = .pkcs7, hexIV: String? = nil)
        throws(FrameCipherError)
    {
        guard let key = Self.bytes(fromHex: hexKey) else { throw .notHex(field: "key") }
        var iv: [UInt8]?
        if let hexIV {
            guard let parsed = Self.bytes(fromHex: hexIV) else { throw .notHex(field: "iv") }
            iv = parsed
        }
        try self.init(key: key, mode: mode, padding: padding, iv: iv)
    }

    /// Encrypts a plain body. With PKCS#7 the result is 1–8 bytes longer; with zero padding it is
    /// rounded up to a whole block (an empty body stays empty).
    public func encrypt(_ plaintext: [UInt8]) throws(FrameCipherError) -> [UInt8] {
        switch padding {
        case .pkcs7:
            let length = (plaintext.count / Self.blockSize + 1) * Self.blockSize
            guard length <= Self.maximumCiphertextLength else { throw .plaintextTooLong(plaintext.count) }
            return try run(plaintext, encrypting: true)
        case .zero:
            let remainder = plaintext.count % Self.blockSize
            let padded = remainder == 0
                ? plaintext : plaintext + [UInt8](repeating: 0, count: Self.blockSize - remainder)
            guard padded.count <= Self.maximumCiphertextLength else { throw .plaintextTooLong(plaintext.count) }
            return try run(padded, encrypting: true)
        }
    }

    /// Decrypts an encrypted body.
    ///
    /// - Throws: `.ciphertextLength` unless the input is a whole number of blocks (at least one with
    ///   PKCS#7) within `maximumCiphertextLength`; `.badPadding` when PKCS#7 padding is wrong, which
    ///   is how a wrong key usually shows. With zero padding a wrong key yields garbage that only the
    ///   frame decoder can reject.
    public func decrypt(_ ciphertext: [UInt8]) throws(FrameCipherError) -> [UInt8] {
        let count = ciphertext.count
        guard count % Self.blockSize == 0, count <= Self.maximumCiphertextLength,
            count > 0 || padding == .zero
        else { throw .ciphertextLength(count) }
        return try run(ciphertext, encrypting: false)
    }

    public var description: String {
        "FrameCipher(3des-\(mode.rawValue), \(padding.rawValue), key \(fingerprint))"
    }

    public var debugDescription: String { description }

    /// Bytes from hexadecimal text (either case, no separators); `nil` if it is not hex.
    public static func bytes(fromHex text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// One EVP pass over `input`. Zero padding is applied by the caller, so libcrypto pads only
    /// for PKCS#7.
    private func run(_ input: [UInt8], encrypting: Bool) throws(FrameCipherError) -> [UInt8] {
        guard let context = EVP_CIPHER_CTX_new() else { throw .libcrypto(Self.lastError("EVP_CIPHER_CTX_new")) }
        defer { EVP_CIPHER_CTX_free(context) }
        let cipher = mode == .ecb ? EVP_des_ede3_ecb() : EVP_des_ede3_cbc()
        let initialised = key.withUnsafeBufferPointer { key in
            iv.withUnsafeBufferPointer { iv in
                EVP_CipherInit_ex(context, cipher, nil, key.baseAddress, iv.baseAddress, encrypting ? 1 : 0)
            }
        }
        guard initialised == 1 else { throw .libcrypto(Self.lastError("EVP_CipherInit_ex")) }
        EVP_CIPHER_CTX_set_padding(context, padding == .pkcs7 ? 1 : 0)

        var output = [UInt8](repeating: 0, count: input.count + Self.blockSize)
        var updated: Int32 = 0
        var finished: Int32 = 0
        let (updateOK, finalOK) = output.withUnsafeMutableBufferPointer { out -> (Int32, Int32) in
            guard let base = out.baseAddress else { return (0, 0) }
            let update = input.withUnsafeBufferPointer { input in
                EVP_CipherUpdate(context, base, &updated, input.baseAddress, Int32(input.count))
            }
            guard update == 1 else { return (update, 0) }
            return (update, EVP_CipherFinal_ex(context, base + Int(updated), &finished))
        }
        guard updateOK == 1 else { throw .libcrypto(Self.lastError("EVP_CipherUpdate")) }
        guard finalOK == 1 else {
            ERR_clear_error()
            // The only way Final fails on a whole number of blocks is a PKCS#7 check on decryption.
            if !encrypting && padding == .pkcs7 { throw .badPadding }
            throw .libcrypto("EVP_CipherFinal_ex failed")
        }
        output.removeLast(output.count - Int(updated) - Int(finished))
        return output
    }

    /// The text of libcrypto's most recent error, and the thread's error queue cleared.
    private static func lastError(_ call: String) -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return "\(call) failed" }
        var text = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &text, text.count)
        let end = text.firstIndex(of: 0) ?? text.count
        return "\(call) failed: " + String(decoding: text[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
