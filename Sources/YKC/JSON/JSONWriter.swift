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
        buffer.writeString(String(value))
    }

    public mutating func decimal(_ value: YKCDecimal) {
        separator()
        buffer.writeString(value.description)
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

    public mutating func time(_ value: CP56Time2a) {
        string(value.iso8601(utcOffsetSeconds: utcOffsetSeconds))
    }

    // Convenience pairs.
    public mutating func field(_ name: String, _ value: String) { key(name); string(value) }
    public mutating func field<I: BinaryInteger>(_ name: String, _ value: I) { key(name); int(value) }
    public mutating func field(_ name: String, _ value: YKCDecimal) { key(name); decimal(value) }
    public mutating func field(_ name: String, _ value: Bool) { key(name); bool(value) }

    private mutating func writeQuoted(_ s: String) {
        buffer.writeInteger(UInt8(ascii: "\""))
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": buffer.writeString("\\\"")
            case "\\": buffer.writeString("\\\\")
            case "\n": buffer.writeString("\\n")
            case "\r": buffer.writeString("\\r")
            case "\t": buffer.writeString("\\t")
            default:
                if scalar.value < 0x20 || (scalar.value >= 0x7F && scalar.value <= 0xFF) {
                    // Control characters and the Latin-1 upper half (raw bytes from ASCII fields)
                    // are escaped so the output stays 7-bit and unambiguous.
                    let v = scalar.value
                    buffer.writeString("\\u00")
                    buffer.writeInteger(hexDigitsUpper[Int(v >> 4)])
                    buffer.writeInteger(hexDigitsUpper[Int(v & 0xF)])
                } else {
                    buffer.writeString(String(scalar))
                }
            }
        }
        buffer.writeInteger(UInt8(ascii: "\""))
    }
}
