/// Why a `FrameCipher` could not be built or could not encrypt or decrypt a body.
///
/// Every failure on the input path is one of these cases; nothing here traps. No case carries key
/// material, so an error can be logged or returned to an API caller as it is.
public enum FrameCipherError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The key is not 16 bytes (2-key 3DES) or 24 bytes (3-key 3DES); the value is the length given.
    case keyLength(Int)
    /// The key or IV text is not an even number of hexadecimal digits.
    case notHex(field: String)
    /// K1 = K2 or K2 = K3: the 3DES key collapses to single DES (56-bit), which is refused.
    case degenerateKey
    /// The IV is not 8 bytes; the value is the length given.
    case ivLength(Int)
    /// An IV was given for ECB, which has none (almost always a configuration mistake).
    case ivWithECB
    /// The ciphertext is empty (with PKCS#7), not a whole number of 8-byte blocks, or longer than a
    /// YKC body can be; the value is its length.
    case ciphertextLength(Int)
    /// The plaintext would encrypt to more than `FrameCipher.maximumCiphertextLength` bytes.
    case plaintextTooLong(Int)
    /// The PKCS#7 padding did not check out after decryption: a wrong key, a wrong mode or IV,
    /// or a corrupted body.
    case badPadding
    /// libcrypto failed where it should not (allocation, initialisation); its error text is kept.
    case libcrypto(String)

    public var description: String {
        switch self {
        case .keyLength(let n):
            return "3DES key must be 16 or 24 bytes (32 or 48 hex digits), got \(n) bytes"
        case .notHex(let field):
            return "\(field) must be an even number of hexadecimal digits"
        case .degenerateKey:
            return "3DES key degenerates to single DES (K1 = K2 or K2 = K3); use independent key parts"
        case .ivLength(let n):
            return "3DES IV must be 8 bytes (16 hex digits), got \(n) bytes"
        case .ivWithECB:
            return "ECB mode takes no IV"
        case .ciphertextLength(let n):
            return "encrypted body of \(n) bytes is not a whole number of 8-byte blocks within "
                + "\(FrameCipher.maximumCiphertextLength) bytes"
        case .plaintextTooLong(let n):
            return "body of \(n) bytes is too long to encrypt into one YKC frame"
        case .badPadding:
            return "decrypted body has invalid PKCS#7 padding (wrong key, mode or IV, or corrupted body)"
        case .libcrypto(let text):
            return "libcrypto: \(text)"
        }
    }
}
