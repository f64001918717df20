/// Everything that can be wrong with the bytes of a YKC stream, one case per kind.
///
/// The parser never throws these; it reports them as events and resynchronises, so a caller can
/// count each kind and decide (a gateway closes a connection that produces too many).
public enum YKCFrameError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Bytes that were not the start of any frame were discarded while looking for `0x68`.
    case garbage(skipped: Int)
    /// A start byte was followed by a length byte below 4 (a frame needs at least sequence, flag, type).
    case invalidLength(UInt8)
    /// The encryption flag of a candidate frame was neither 0x00 nor 0x01, so it is no frame.
    case invalidEncryptionFlag(UInt8)
    /// The CRC matched in neither byte order.
    case crcMismatch(wire: UInt16, computed: UInt16)
    /// The stream ended inside a frame.
    case truncated(have: Int, need: Int)

    /// A stable snake_case name, used as a metric label and in JSON.
    public var kind: String {
        switch self {
        case .garbage: "garbage"
        case .invalidLength: "invalid_length"
        case .invalidEncryptionFlag: "invalid_encryption_flag"
        case .crcMismatch: "crc_mismatch"
        case .truncated: "truncated"
        }
    }

    public var description: String {
        switch self {
        case .garbage(let n): "skipped \(n) byte(s) that are not part of a frame (no 0x68 start byte)"
        case .invalidLength(let l): "length byte \(l) is below the minimum of 4"
        case .invalidEncryptionFlag(let f): "encryption flag 0x\(hexByte(f)) is neither 0x00 nor 0x01"
        case .crcMismatch(let w, let c):
            "CRC mismatch: wire \(hexByte(UInt8(w & 0xFF)))\(hexByte(UInt8(w >> 8))), computed "
                + "\(hexByte(UInt8(c & 0xFF)))\(hexByte(UInt8(c >> 8))) (low byte first), neither byte order matches"
        case .truncated(let have, let need): "truncated frame: \(have) of \(need) bytes"
        }
    }
}
