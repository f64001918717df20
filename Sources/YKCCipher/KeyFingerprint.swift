import CLibCrypto

/// A short, non-secret name for a key: the first hex digits of its SHA-256.
///
/// The admin API shows this instead of the key, so an operator can check which key is installed
/// without the key ever leaving the gateway. Four hex digits reveal 16 bits of a hash, nothing
/// usable about a 112- or 168-bit key. SHA-256 comes from the same libcrypto as the cipher
/// (swift-crypto is not a dependency of pilegate).
public enum KeyFingerprint {
    /// How many hex digits a fingerprint has.
    public static let hexDigits = 4

    /// The fingerprint of `key`: the first `hexDigits` lowercase hex digits of SHA-256(key).
    public static func of(_ key: [UInt8]) -> String {
        let digest = sha256(key)
        var text = ""
        for byte in digest.prefix((hexDigits + 1) / 2) {
            text += hex(byte)
        }
        return String(text.prefix(hexDigits))
    }

    /// SHA-256 of `bytes` through libcrypto's EVP digest interface.
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let ok = bytes.withUnsafeBytes { input in
            digest.withUnsafeMutableBufferPointer { out in
                EVP_Digest(input.baseAddress, input.count, out.baseAddress, &length, EVP_sha256(), nil)
            }
        }
        // EVP_Digest only fails on allocation failure inside libcrypto; an all-zero digest is
        // returned then, which cannot match a real key's fingerprint.
        if ok != 1 { ERR_clear_error() }
        return digest
    }

    static func hex(_ byte: UInt8) -> String {
        let digits: [Character] = Array("0123456789abcdef")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
    }
}
