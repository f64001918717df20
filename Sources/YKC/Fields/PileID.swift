import NIOCore

/// A pile id (桩编号): 7 bytes of BCD, 14 digits (docs/ykc/PROTOCOL-FACTS.md §1.4).
///
/// Kept as its raw bytes in one integer, so it hashes and compares without allocating and
/// round-trips exactly even when a pile puts hex letters in a "BCD" field.
public struct PileID: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The 7 wire bytes, big-endian in the low 56 bits.
    public var raw: UInt64

    public init(raw: UInt64) { self.raw = raw & 0x00FF_FFFF_FFFF_FFFF }

    /// Parses 1…14 hex/decimal digits, left-padding with zeros ("32010600019236").
    public init?(_ text: some StringProtocol) {
        guard let raw = parseHexDigits(text, maxDigits: 14) else { return nil }
        self.raw = raw
    }

    public var description: String { hexString(raw, digits: 14) }

    /// True when every nibble is a decimal digit, as the protocol intends.
    public var isDecimal: Bool { allNibblesDecimal(raw, digits: 14) }

    public static func < (lhs: PileID, rhs: PileID) -> Bool { lhs.raw < rhs.raw }

    @inlinable
    public static func read(from buffer: inout ByteBuffer) -> PileID? {
        guard let hi = buffer.readInteger(endianness: .big, as: UInt32.self),
            let lo = buffer.readInteger(endianness: .big, as: UInt16.self),
            let last = buffer.readInteger(as: UInt8.self)
        else { return nil }
        return PileID(raw: UInt64(hi) << 24 | UInt64(lo) << 8 | UInt64(last))
    }

    @inlinable
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(truncatingIfNeeded: raw >> 24), endianness: .big)
        buffer.writeInteger(UInt16(truncatingIfNeeded: raw >> 8), endianness: .big)
        buffer.writeInteger(UInt8(truncatingIfNeeded: raw))
    }
}

/// A trade serial (交易流水号): 16 bytes of BCD, 32 digits, treated as an opaque key (docs/ykc/PROTOCOL-FACTS.md §1.4).
public struct TradeSerial: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Parses up to 32 hex/decimal digits, left-padding with zeros.
    public init?(_ text: some StringProtocol) {
        let digits = Array(text.utf8)
        guard digits.count <= 32 else { return nil }
        let padded = [UInt8](repeating: UInt8(ascii: "0"), count: 32 - digits.count) + digits
        guard let h = parseHexDigits(String(decoding: padded[0..<16], as: UTF8.self), maxDigits: 16),
            let l = parseHexDigits(String(decoding: padded[16..<32], as: UTF8.self), maxDigits: 16)
        else { return nil }
        self.high = h
        self.low = l
    }

    public static let zero = TradeSerial(high: 0, low: 0)

    /// All-zero serials mark "no session" in idle real-time frames (docs/ykc/PROTOCOL-FACTS.md §1.4).
    public var isZero: Bool { high == 0 && low == 0 }

    public var description: String { hexString(high, digits: 16) + hexString(low, digits: 16) }

    @inlinable
    public static func read(from buffer: inout ByteBuffer) -> TradeSerial? {
        guard let h = buffer.readInteger(endianness: .big, as: UInt64.self),
            let l = buffer.readInteger(endianness: .big, as: UInt64.self)
        else { return nil }
        return TradeSerial(high: h, low: l)
    }

    @inlinable
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(high, endianness: .big)
        buffer.writeInteger(low, endianness: .big)
    }
}

/// Eight bytes of binary shown as 16 hex digits: physical card numbers, gun cable codes (docs/ykc/PROTOCOL-FACTS.md §1.4).
public struct BinaryID: Hashable, Sendable, CustomStringConvertible {
    /// The 8 wire bytes, big-endian.
    public var raw: UInt64

    public init(raw: UInt64) { self.raw = raw }

    public init?(_ text: some StringProtocol) {
        guard let raw = parseHexDigits(text, maxDigits: 16) else { return nil }
        self.raw = raw
    }

    public static let zero = BinaryID(raw: 0)
    public var description: String { hexString(raw, digits: 16) }

    @inlinable
    public static func read(from buffer: inout ByteBuffer) -> BinaryID? {
        buffer.readInteger(endianness: .big, as: UInt64.self).map(BinaryID.init(raw:))
    }

    @inlinable
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(raw, endianness: .big)
    }
}

/// Uppercase hex of the low `digits` nibbles of `value`; small enough to stay a small string.
func hexString(_ value: UInt64, digits: Int) -> String {
    String(unsafeUninitializedCapacity: digits) { out in
        for i in 0..<digits {
            let nibble = Int((value >> UInt64(4 * (digits - 1 - i))) & 0xF)
            out[i] = hexDigitsUpper[nibble]
        }
        return digits
    }
}

func allNibblesDecimal(_ value: UInt64, digits: Int) -> Bool {
    for i in 0..<digits where (value >> UInt64(4 * i)) & 0xF > 9 { return false }
    return true
}

/// The value of one hex digit, upper or lower case; nil for any other byte.
@inline(__always)
func hexNibble(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    default: return nil
    }
}

/// Parses hex digits (upper or lower case) into an integer; nil on a bad character or too many digits.
func parseHexDigits(_ text: some StringProtocol, maxDigits: Int) -> UInt64? {
    var value: UInt64 = 0
    var count = 0
    for c in text.utf8 {
        guard let nibble = hexNibble(c) else { return nil }
        count += 1
        if count > maxDigits { return nil }
        value = value << 4 | UInt64(nibble)
    }
    return count == 0 ? nil : value
}
