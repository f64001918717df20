import Crypto
import Foundation

/// An NKey: an Ed25519 key pair in NATS's text form, for servers that authenticate clients by
/// public key (`authorization { users = [ { nkey: U… } ] }`) or by JWT (operator mode).
///
/// A key is base32 (RFC 4648 alphabet, no padding) of prefix bytes, the 32 key bytes and a CRC16-XMODEM
/// of both (little-endian). A seed (`S…`) carries two prefix bytes, the seed marker and the key's role
/// (`SU…` for a user); a public key carries one, its role (`U…`). The server's INFO holds a random
/// `nonce`; the client proves it holds the seed by signing those bytes and sending the signature
/// (base64url, no padding) in CONNECT with the public key or the JWT. The seed never leaves the process.
public struct NKey: Sendable {
    /// What a key is for; the first letter of the public key.
    public enum Role: UInt8, Sendable, CaseIterable {
        case user = 160  // 20 << 3: 'U'
        case account = 0  // 0 << 3: 'A'
        case `operator` = 112  // 14 << 3: 'O'
        case server = 104  // 13 << 3: 'N'
        case cluster = 16  // 2 << 3: 'C'
    }

    static let seedPrefixByte: UInt8 = 144  // 18 << 3: 'S'

    public let role: Role
    /// The 32-byte Ed25519 seed (swift-crypto's key type is not `Sendable`, so the key is rebuilt per use).
    private let rawSeed: [UInt8]
    private let publicKeyBytes: [UInt8]

    /// Parses a seed (`SU…` for a user). Surrounding whitespace is ignored; anything else that is not
    /// a well-formed seed (bad base32, checksum, prefix, length) is `NKeyError`, whose text never holds the seed.
    public init(seed: String) throws {
        let text = seed.trimmingCharacters(in: .whitespacesAndNewlines)
        let raw = try Self.decodeChecked(text)
        guard raw.count == 34, raw[0] & 0xF8 == Self.seedPrefixByte else { throw NKeyError.notASeed }
        let roleByte = (raw[0] & 0x07) << 5 | (raw[1] & 0xF8) >> 3
        guard let role = Role(rawValue: roleByte) else { throw NKeyError.unknownRole }
        self.role = role
        self.rawSeed = Array(raw[2...])
        do {
            self.publicKeyBytes = Array(try Curve25519.Signing.PrivateKey(rawRepresentation: rawSeed).publicKey.rawRepresentation)
        } catch {
            throw NKeyError.notASeed
        }
    }

    /// A key pair from 32 bytes of Ed25519 seed (for tests and tooling that mint keys).
    public init(rawSeed: [UInt8], role: Role = .user) throws {
        guard rawSeed.count == 32 else { throw NKeyError.notASeed }
        self.role = role
        self.rawSeed = rawSeed
        self.publicKeyBytes = Array(try Curve25519.Signing.PrivateKey(rawRepresentation: rawSeed).publicKey.rawRepresentation)
    }

    /// The public key in text form (`U…` for a user): what the server's config or a JWT names.
    public var publicKey: String {
        Self.encode(prefix: [role.rawValue], body: publicKeyBytes)
    }

    /// The seed in text form (`SU…` for a user). A secret: for writing key files, never for logs.
    public var seed: String {
        Self.encode(
            prefix: [Self.seedPrefixByte | role.rawValue >> 5, (role.rawValue & 0x1F) << 3],
            body: rawSeed
        )
    }

    /// The Ed25519 signature of `data`.
    public func sign(_ data: some DataProtocol) throws -> [UInt8] {
        Array(try Curve25519.Signing.PrivateKey(rawRepresentation: rawSeed).signature(for: data))
    }

    /// The signature of the server's nonce as CONNECT's `sig` wants it: base64url without padding.
    public func signNonce(_ nonce: String) throws -> String {
        Self.base64URL(try sign(Array(nonce.utf8)))
    }

    /// Checks an Ed25519 signature against a public key in text form (`U…`, `A…`, `O…`).
    public static func verify(signature: some DataProtocol, of data: some DataProtocol, publicKey: String) -> Bool {
        guard let raw = try? decodeChecked(publicKey), raw.count == 33, Role(rawValue: raw[0]) != nil,
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: Array(raw[1...]))
        else { return false }
        return key.isValidSignature(signature, for: data)
    }

    // MARK: - Encoding

    static func encode(prefix: [UInt8], body: [UInt8]) -> String {
        var bytes = prefix + body
        let crc = crc16(bytes)
        bytes.append(UInt8(crc & 0xFF))
        bytes.append(UInt8(crc >> 8))
        return base32Encode(bytes)
    }

    /// Base32-decodes `text` and checks (and strips) its trailing CRC16.
    static func decodeChecked(_ text: String) throws -> [UInt8] {
        guard let bytes = base32Decode(text) else { throw NKeyError.invalidEncoding }
        guard bytes.count > 2 else { throw NKeyError.invalidEncoding }
        let body = Array(bytes[..<(bytes.count - 2)])
        let stored = UInt16(bytes[bytes.count - 2]) | UInt16(bytes[bytes.count - 1]) << 8
        guard crc16(body) == stored else { throw NKeyError.invalidChecksum }
        return body
    }

    /// CRC16-XMODEM (polynomial 0x1021, initial value 0, not reflected).
    static func crc16(_ bytes: [UInt8]) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 {
                crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
            }
        }
        return crc
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    static func base32Encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 8 + 4) / 5)
        var buffer: UInt32 = 0
        var bits = 0
        for byte in bytes {
            buffer = buffer << 8 | UInt32(byte)
            bits += 8
            while bits >= 5 {
                bits -= 5
                out.append(alphabet[Int((buffer >> UInt32(bits)) & 0x1F)])
            }
        }
        if bits > 0 { out.append(alphabet[Int((buffer << UInt32(5 - bits)) & 0x1F)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// nil on a character outside the alphabet or non-zero trailing bits.
    static func base32Decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count * 5 / 8)
        var buffer: UInt32 = 0
        var bits = 0
        for character in text.utf8 {
            let value: UInt8
            switch character {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = character - UInt8(ascii: "A")
            case UInt8(ascii: "2")...UInt8(ascii: "7"): value = character - UInt8(ascii: "2") + 26
            default: return nil
            }
            buffer = (buffer << 5 | UInt32(value)) & 0x1FFF
            bits += 5
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((buffer >> UInt32(bits)) & 0xFF))
            }
        }
        guard bits < 5, buffer & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return out
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

extension NKey: CustomStringConvertible {
    /// The public key only: a key pair printed in a log must not leak its seed.
    public var description: String { "NKey(\(publicKey))" }
}

/// Why a seed or credentials file was refused. The cases hold no key material.
public enum NKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not base32 of the right length.
    case invalidEncoding
    /// The CRC16 does not match: a typo or a truncated key.
    case invalidChecksum
    /// Decodes, but is not a seed (a public key was given where a seed was expected?).
    case notASeed
    /// A seed for a role NATS does not know.
    case unknownRole
    /// A credentials file without the expected `-----BEGIN …-----` blocks.
    case invalidCredentials(String)
    /// The credentials file could not be read.
    case unreadableFile(path: String, reason: String)

    public var description: String {
        switch self {
        case .invalidEncoding: "NKey seed is not valid base32 of the expected length"
        case .invalidChecksum: "NKey seed checksum does not match (typo or truncated key?)"
        case .notASeed: "not an NKey seed (seeds start with 'S'; 'SU' for users)"
        case .unknownRole: "NKey seed of an unknown role"
        case .invalidCredentials(let reason): "invalid NATS credentials: \(reason)"
        case .unreadableFile(let path, let reason): "cannot read NATS credentials file \(path): \(reason)"
        }
    }
}

extension NKey: Equatable {
    /// Two key pairs are equal when their public keys are (the public key follows from the seed).
    public static func == (lhs: NKey, rhs: NKey) -> Bool {
        lhs.role == rhs.role && lhs.publicKeyBytes == rhs.publicKeyBytes
    }
}
