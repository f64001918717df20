import NIOCore

/// A BCD field of any width kept verbatim as hex digits (SIM/ICCID, logical card no, model no, …).
///
/// Real piles put hex letters in some "BCD" fields (ICCID `898604D1…`, docs/ykc/PROTOCOL-FACTS.md §1.3), so the digits
/// are read as nibbles, never validated as decimal, and written back exactly.
///
/// Up to 32 hex digits (every BCD field of the protocol) are kept as packed nibbles inline, not as
/// a `String`: a 20-digit SIM as text is a 64-byte heap block, and every logged-in session keeps
/// its login's SIM. Any other text (a literal with other characters, or longer) is kept as text.
public struct BCDDigits: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    private enum Storage: Hashable, Sendable {
        /// `count` digits, the last one in the low nibble of `low`, the ones before it above.
        case nibbles(high: UInt64, low: UInt64, count: UInt8)
        case text(String)
    }

    private var storage: Storage

    /// Uppercase hex digits, two per byte.
    public var digits: String {
        switch storage {
        case .text(let text): return text
        case .nibbles(_, _, let count):
            return String(unsafeUninitializedCapacity: Int(count)) { out in
                for i in 0..<Int(count) { out[i] = hexDigitsUpper[Int(nibble(i))] }
                return Int(count)
            }
        }
    }

    /// Pads on the left with zeros to `2 * byteCount` digits. Nil if the text is not hex or too long.
    public init?(_ text: String, byteCount: Int) {
        guard text.utf8.count <= byteCount * 2,
            text.utf8.allSatisfy({ hexNibble($0) != nil })
        else { return nil }
        self.init(text: String(repeating: "0", count: byteCount * 2 - text.utf8.count) + text.uppercased())
    }

    public init(stringLiteral value: String) { self.init(text: value.uppercased()) }

    /// Packs `text` (already uppercase) when it is at most 32 hex digits.
    private init(text: String) {
        var high: UInt64 = 0
        var low: UInt64 = 0
        var count = 0
        for c in text.utf8 {
            // Uppercase only: lowercase text is kept as text, exactly as given.
            guard c < UInt8(ascii: "a"), let v = hexNibble(c), count < 32 else {
                storage = .text(text)
                return
            }
            high = high << 4 | low >> 60
            low = low << 4 | UInt64(v)
            count += 1
        }
        storage = .nibbles(high: high, low: low, count: UInt8(count))
    }

    /// The digits of `bytes`, two per byte, followed by zeros up to `2 * byteCount` digits when
    /// there are fewer than `byteCount` bytes.
    public init(bytes: some Collection<UInt8>, byteCount: Int) {
        guard byteCount <= 16 else {
            var out = [UInt8]()
            out.reserveCapacity(byteCount * 2)
            for b in bytes.prefix(byteCount) {
                out.append(hexDigitsUpper[Int(b >> 4)])
                out.append(hexDigitsUpper[Int(b & 0xF)])
            }
            while out.count < byteCount * 2 { out.append(UInt8(ascii: "0")) }
            storage = .text(String(decoding: out, as: UTF8.self))
            return
        }
        var high: UInt64 = 0
        var low: UInt64 = 0
        var taken = 0
        for b in bytes.prefix(byteCount) {
            high = high << 8 | low >> 56
            low = low << 8 | UInt64(b)
            taken += 1
        }
        for _ in taken..<byteCount {
            high = high << 8 | low >> 56
            low <<= 8
        }
        storage = .nibbles(high: high, low: low, count: UInt8(byteCount * 2))
    }

    public var description: String { digits }

    /// The decimal value when every digit is decimal and the number fits.
    public var decimalValue: UInt64? { UInt64(digits) }

    /// Digit `i` (0 is the first) as a value 0…15; a character that is not a hex digit counts as 0.
    private func nibble(_ i: Int) -> UInt8 {
        switch storage {
        case .nibbles(let high, let low, let count):
            let shift = 4 * (Int(count) - 1 - i)
            return UInt8(truncatingIfNeeded: (shift >= 64 ? high >> (shift - 64) : low >> shift) & 0xF)
        case .text(let text):
            let c = text.utf8[text.utf8.index(text.utf8.startIndex, offsetBy: i)]
            return UInt8(parseHexDigits(String(UnicodeScalar(c)), maxDigits: 1) ?? 0)
        }
    }

    private var count: Int {
        switch storage {
        case .nibbles(_, _, let count): Int(count)
        case .text(let text): text.utf8.count
        }
    }

    public static func read(from buffer: inout ByteBuffer, byteCount: Int) -> BCDDigits? {
        guard let view = buffer.readSlice(length: byteCount) else { return nil }
        return BCDDigits(bytes: view.readableBytesView, byteCount: byteCount)
    }

    /// Writes exactly `byteCount` bytes (the value is left-padded or truncated on the left).
    public func write(to buffer: inout ByteBuffer, byteCount: Int) {
        let n = count
        let pad = byteCount * 2 - n
        func digit(_ j: Int) -> UInt8 {
            let i = j - pad
            return i >= 0 && i < n ? nibble(i) : 0
        }
        for k in 0..<byteCount {
            buffer.writeInteger(digit(2 * k) << 4 | digit(2 * k + 1))
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
