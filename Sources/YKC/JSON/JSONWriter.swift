import NIOCore

/// A small streaming JSON writer into a `ByteBuffer`.
///
/// Events are written straight into the buffer that goes to the socket: no intermediate
/// dictionary, keys in a stable order (the order of `protocol-specs/`), numbers exact.
public struct JSONWriter {
    public var buffer: ByteBuffer
    /// Wall-clock offset used to print CP56Time2a times (default +08:00).
    public var utcOffsetSeconds: Int
    @usableFromInline var needsComma = false

    public init(buffer: ByteBuffer = ByteBuffer(), utcOffsetSeconds: Int = 8 * 3600) {
        self.buffer = buffer
        self.utcOffsetSeconds = utcOffsetSeconds
    }

    /// The text written so far.
    public var string: String { String(buffer: buffer) }

    @inlinable
    mutating func separator() {
        if needsComma { buffer.writeInteger(UInt8(ascii: ",")) }
        needsComma = true
    }

    public mutating func beginObject() {
        separator()
        buffer.writeInteger(UInt8(ascii: "{"))
        needsComma = false
    }

    public mutating func endObject() {
        buffer.writeInteger(UInt8(ascii: "}"))
        needsComma = true
    }

    public mutating func beginArray() {
        separator()
        buffer.writeInteger(UInt8(ascii: "["))
        needsComma = false
    }

    public mutating func endArray() {
        buffer.writeInteger(UInt8(ascii: "]"))
        needsComma = true
    }

    /// Writes `"name":`; the next value call completes the pair.
    public mutating func key(_ name: String) {
        separator()
        writeQuoted(name)
        buffer.writeInteger(UInt8(ascii: ":"))
        needsComma = false
    }

    public mutating func string(_ value: String) {
        separator()
        writeQuoted(value)
    }

    public mutating func int<I: BinaryInteger>(_ value: I) {
        separator()
        if let v = Int64(exactly: value) {
            writeDigits(v)
        } else {
            buffer.writeString(String(value))
        }
    }

    /// Exact decimal text with exactly `scale` fraction digits, written as bytes (no String):
    /// the same text as `YKCDecimal.description`.
    public mutating func decimal(_ value: YKCDecimal) {
        separator()
        guard value.scale > 0, value.scale <= 18 else {
            buffer.writeString(value.description)
            return
        }
        if value.units < 0 { buffer.writeInteger(UInt8(ascii: "-")) }
        let mag = value.units.magnitude
        let f = UInt64(pow10(value.scale))
        writeUnsignedDigits(mag / f, minimumDigits: 1)
        buffer.writeInteger(UInt8(ascii: "."))
        writeUnsignedDigits(mag % f, minimumDigits: value.scale)
    }

    public mutating func double(_ value: Double) {
        separator()
        buffer.writeString(value.isFinite ? String(value) : "null")
    }

    public mutating func bool(_ value: Bool) {
        separator()
        buffer.writeString(value ? "true" : "false")
    }

    public mutating func null() {
        separator()
        buffer.writeString("null")
    }

    /// Writes text that is already valid JSON (a nested document).
    public mutating func raw(_ json: String) {
        separator()
        buffer.writeString(json)
    }

    public mutating func raw(_ json: ByteBuffer) {
        separator()
        buffer.writeImmutableBuffer(json)
    }

    /// The same text as `CP56Time2a.iso8601`, written as bytes.
    public mutating func time(_ value: CP56Time2a) {
        guard value.isValid else {
            string(value.iso8601(utcOffsetSeconds: utcOffsetSeconds))
            return
        }
        separator()
        let off = abs(utcOffsetSeconds)
        buffer.writeInteger(UInt8(ascii: "\""))
        writeDateTime(value.year, value.month, value.day, value.hour, value.minute, value.second)
        writeUnsignedDigits(UInt64(value.millisecond), minimumDigits: 3)
        buffer.writeInteger(utcOffsetSeconds < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
        writeUnsignedDigits(UInt64(off / 3600), minimumDigits: 2)
        buffer.writeInteger(UInt8(ascii: ":"))
        writeUnsignedDigits(UInt64((off / 60) % 60), minimumDigits: 2)
        buffer.writeInteger(UInt8(ascii: "\""))
    }

    /// `YYYY-MM-DDTHH:MM:SS.` (the fraction and zone follow).
    private mutating func writeDateTime(_ year: Int, _ month: Int, _ day: Int, _ hour: Int, _ minute: Int, _ second: Int) {
        writeUnsignedDigits(UInt64(max(0, year)), minimumDigits: 4)
        buffer.writeInteger(UInt8(ascii: "-"))
        writeUnsignedDigits(UInt64(month), minimumDigits: 2)
        buffer.writeInteger(UInt8(ascii: "-"))
        writeUnsignedDigits(UInt64(day), minimumDigits: 2)
        buffer.writeInteger(UInt8(ascii: "T"))
        writeUnsignedDigits(UInt64(hour), minimumDigits: 2)
        buffer.writeInteger(UInt8(ascii: ":"))
        writeUnsignedDigits(UInt64(minute), minimumDigits: 2)
        buffer.writeInteger(UInt8(ascii: ":"))
        writeUnsignedDigits(UInt64(second), minimumDigits: 2)
        buffer.writeInteger(UInt8(ascii: "."))
    }

    // Convenience pairs.
    public mutating func field(_ name: String, _ value: String) { key(name); string(value) }
    public mutating func field<I: BinaryInteger>(_ name: String, _ value: I) { key(name); int(value) }
    public mutating func field(_ name: String, _ value: YKCDecimal) { key(name); decimal(value) }
    public mutating func field(_ name: String, _ value: Bool) { key(name); bool(value) }

    /// A pile id as its 14 hex digits in quotes (the same text as `PileID.description`).
    public mutating func pileId(_ id: PileID) {
        separator()
        buffer.writeInteger(UInt8(ascii: "\""))
        writeHexDigits(id.raw, digits: 14)
        buffer.writeInteger(UInt8(ascii: "\""))
    }

    /// A UTC instant as ISO 8601 with microseconds, `"2026-11-30T11:06:45.629123Z"`: the
    /// gateway's own timestamps (an event's `receivedAt`), written without Foundation's
    /// formatters, which cost more than the rest of an event together.
    public mutating func utcTimestamp(microsecondsSince1970 micros: Int64) {
        separator()
        let perDay: Int64 = 86_400_000_000
        let days = micros >= 0 ? micros / perDay : -((-micros + perDay - 1) / perDay)
        let ofDay = micros - days * perDay
        let (y, m, d) = civilFromDays(Int(days))
        let seconds = Int(ofDay / 1_000_000)
        buffer.writeInteger(UInt8(ascii: "\""))
        writeDateTime(y, m, d, seconds / 3600, (seconds / 60) % 60, seconds % 60)
        writeUnsignedDigits(UInt64(ofDay % 1_000_000), minimumDigits: 6)
        buffer.writeStaticString("Z\"")
    }

    @usableFromInline
    mutating func writeHexDigits(_ value: UInt64, digits: Int) {
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: digits) { out in
            for i in 0..<digits {
                out[i] = hexDigitsUpper[Int((value >> UInt64(4 * (digits - 1 - i))) & 0xF)]
            }
            return digits
        }
    }

    /// A signed integer in decimal, straight into the buffer.
    @usableFromInline
    mutating func writeDigits(_ value: Int64) {
        if value < 0 { buffer.writeInteger(UInt8(ascii: "-")) }
        writeUnsignedDigits(value.magnitude, minimumDigits: 1)
    }

    /// Decimal digits of `value`, left-padded with zeros to `minimumDigits`.
    @usableFromInline
    mutating func writeUnsignedDigits(_ value: UInt64, minimumDigits: Int) {
        var count = 1
        var t = value
        while t >= 10 {
            t /= 10
            count += 1
        }
        count = max(count, minimumDigits)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
            var v = value
            var i = count
            while i > 0 {
                i -= 1
                out[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
                v /= 10
            }
            return count
        }
    }

    /// A JSON string. Plain printable ASCII (ids, names, enum values: nearly everything the
    /// gateway writes) is copied in one go; only strings that need escaping take the per-scalar
    /// path, which still writes bytes, never a `String` per character.
    private mutating func writeQuoted(_ s: String) {
        buffer.writeInteger(UInt8(ascii: "\""))
        let copied: Bool? = s.utf8.withContiguousStorageIfAvailable { bytes in
            for b in bytes where b < 0x20 || b >= 0x7F || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") {
                return false
            }
            buffer.writeBytes(bytes)
            return true
        }
        if copied != true { writeEscaped(s) }
        buffer.writeInteger(UInt8(ascii: "\""))
    }

    private mutating func writeEscaped(_ s: String) {
        for scalar in s.unicodeScalars {
            let v = scalar.value
            switch v {
            case 0x22: buffer.writeStaticString("\\\"")
            case 0x5C: buffer.writeStaticString("\\\\")
            case 0x0A: buffer.writeStaticString("\\n")
            case 0x0D: buffer.writeStaticString("\\r")
            case 0x09: buffer.writeStaticString("\\t")
            case 0..<0x20, 0x7F...0xFF:
                // Control characters and the Latin-1 upper half (raw bytes from ASCII fields)
                // are escaped so the output stays 7-bit and unambiguous.
                buffer.writeStaticString("\\u00")
                buffer.writeInteger(hexDigitsUpper[Int(v >> 4)])
                buffer.writeInteger(hexDigitsUpper[Int(v & 0xF)])
            case 0x20..<0x7F:
                buffer.writeInteger(UInt8(truncatingIfNeeded: v))
            default:
                UTF8.encode(scalar) { buffer.writeInteger($0) }
            }
        }
    }
}
