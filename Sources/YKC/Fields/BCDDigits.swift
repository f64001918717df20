import NIOCore

/// A BCD field of any width kept verbatim as hex digits (SIM/ICCID, logical card no, model no, …).
///
/// Real piles put hex letters in some "BCD" fields (ICCID `898604D1…`, docs/ykc/PROTOCOL-FACTS.md §1.3), so the digits
/// are read as nibbles, never validated as decimal, and written back exactly.
public struct BCDDigits: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// Uppercase hex digits, two per byte.
    public private(set) var digits: String

    /// Pads on the left with zeros to `2 * byteCount` digits. Nil if the text is not hex or too long.
    public init?(_ text: String, byteCount: Int) {
        guard text.utf8.count <= byteCount * 2,
            text.utf8.allSatisfy({ parseHexDigits(String(UnicodeScalar($0)), maxDigits: 1) != nil })
        else { return nil }
        self.digits = String(repeating: "0", count: byteCount * 2 - text.utf8.count) + text.uppercased()
    }

    public init(stringLiteral value: String) { self.digits = value.uppercased() }

    public var description: String { digits }

    /// The decimal value when every digit is decimal and the number fits.
    public var decimalValue: UInt64? { UInt64(digits) }

    public static func read(from buffer: inout ByteBuffer, byteCount: Int) -> BCDDigits? {
        guard let view = buffer.readSlice(length: byteCount) else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(byteCount * 2)
        for b in view.readableBytesView {
            out.append(hexDigitsUpper[Int(b >> 4)])
            out.append(hexDigitsUpper[Int(b & 0xF)])
        }
        return BCDDigits(stringLiteral: String(decoding: out, as: UTF8.self))
    }

    /// Writes exactly `byteCount` bytes (the value is left-padded or truncated on the left).
    public func write(to buffer: inout ByteBuffer, byteCount: Int) {
        var nibbles = Array(digits.utf8).map { c -> UInt8 in
            UInt8(parseHexDigits(String(UnicodeScalar(c)), maxDigits: 1) ?? 0)
        }
        if nibbles.count < byteCount * 2 {
            nibbles = [UInt8](repeating: 0, count: byteCount * 2 - nibbles.count) + nibbles
        } else if nibbles.count > byteCount * 2 {
            nibbles = Array(nibbles.suffix(byteCount * 2))
        }
        for i in 0..<byteCount {
            buffer.writeInteger(nibbles[2 * i] << 4 | nibbles[2 * i + 1])
        }
    }
}

/// One byte of BCD holding a small number: the gun number (枪号), docs/ykc/PROTOCOL-FACTS.md §1.4.
///
/// The raw byte is kept so a non-decimal value round-trips; `number` is its decimal reading.
public struct GunNumber: Hashable, Sendable, Comparable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    public var raw: UInt8

    public init(raw: UInt8) { self.raw = raw }

    /// The gun from its number 0…99, BCD-encoded.
    public init?(number: Int) {
        guard (0...99).contains(number) else { return nil }
        self.raw = UInt8(number / 10) << 4 | UInt8(number % 10)
    }

    public init(integerLiteral value: Int) { self.raw = UInt8(value / 10) << 4 | UInt8(value % 10) }

    /// Decimal reading of the BCD byte; for a non-BCD byte, its binary value.
    public var number: Int {
        let hi = Int(raw >> 4)
        let lo = Int(raw & 0xF)
        return hi <= 9 && lo <= 9 ? hi * 10 + lo : Int(raw)
    }

    public var description: String { String(number) }
    public static func < (lhs: GunNumber, rhs: GunNumber) -> Bool { lhs.number < rhs.number }
}

/// Fixed-width ASCII (zero-padded). Bytes map one-to-one to Latin-1 scalars, so any bytes a pile
/// sends round-trip exactly; only trailing 0x00 padding is dropped.
public enum FixedASCII {
    public static func read(from buffer: inout ByteBuffer, count: Int, reversed: Bool = false) -> String? {
        guard let slice = buffer.readSlice(length: count) else { return nil }
        var bytes = Array(slice.readableBytesView)
        if reversed { bytes.reverse() }
        while let last = bytes.last, last == 0 { bytes.removeLast() }
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(UnicodeScalar(b)) }
        return String(s)
    }

    /// Writes `count` bytes: the text's scalars (Latin-1; others become `?`), then zero padding.
    public static func write(_ text: String, to buffer: inout ByteBuffer, count: Int, reversed: Bool = false) {
        var bytes = [UInt8]()
        bytes.reserveCapacity(count)
        for scalar in text.unicodeScalars.prefix(count) {
            bytes.append(scalar.value <= 0xFF ? UInt8(scalar.value) : UInt8(ascii: "?"))
        }
        bytes.append(contentsOf: repeatElement(0, count: count - bytes.count))
        if reversed { bytes.reverse() }
        buffer.writeBytes(bytes)
    }
}

/// Raw bytes shown as hex (passwords as MD5 digests, reserved areas, vendor-defined serials).
public struct HexBytes: Hashable, Sendable, CustomStringConvertible {
    public var bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(zeros count: Int) { self.bytes = [UInt8](repeating: 0, count: count) }

    /// Parses an even number of hex digits (spaces allowed).
    public init?(hex: String) {
        let clean = hex.filter { !$0.isWhitespace }
        guard clean.utf8.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        var it = clean.utf8.makeIterator()
        while let a = it.next(), let b = it.next() {
            guard let v = parseHexDigits(String(decoding: [a, b], as: UTF8.self), maxDigits: 2) else { return nil }
            out.append(UInt8(v))
        }
        self.bytes = out
    }

    public var description: String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(hexDigitsUpper[Int(b >> 4)])
            out.append(hexDigitsUpper[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func read(from buffer: inout ByteBuffer, count: Int) -> HexBytes? {
        buffer.readBytes(length: count).map(HexBytes.init)
    }

    /// Writes exactly `count` bytes, zero-padded or truncated.
    public func write(to buffer: inout ByteBuffer, count: Int) {
        buffer.writeBytes(bytes.prefix(count))
        if bytes.count < count { buffer.writeRepeatingByte(0, count: count - bytes.count) }
    }
}
