import NIOCore

// Field readers used by the generated message decoders. A decoder checks the body length before
// reading, so these never run short; if they did, they return zero values rather than trap.
extension ByteBuffer {
    @inlinable
    mutating func ykcReadUInt(_ size: Int) -> UInt64 {
        switch size {
        case 1: return UInt64(readInteger(as: UInt8.self) ?? 0)
        case 2: return UInt64(readInteger(endianness: .little, as: UInt16.self) ?? 0)
        case 4: return UInt64(readInteger(endianness: .little, as: UInt32.self) ?? 0)
        default:
            var v: UInt64 = 0
            for i in 0..<size { v |= UInt64(readInteger(as: UInt8.self) ?? 0) << UInt64(8 * i) }
            return v
        }
    }

    @inlinable
    mutating func ykcWriteUInt(_ value: UInt64, _ size: Int) {
        switch size {
        case 1: writeInteger(UInt8(truncatingIfNeeded: value))
        case 2: writeInteger(UInt16(truncatingIfNeeded: value), endianness: .little)
        case 4: writeInteger(UInt32(truncatingIfNeeded: value), endianness: .little)
        default:
            for i in 0..<size { writeInteger(UInt8(truncatingIfNeeded: value >> UInt64(8 * i))) }
        }
    }

    @inlinable
    mutating func ykcReadPileID() -> PileID { PileID.read(from: &self) ?? PileID(raw: 0) }
    @inlinable
    mutating func ykcReadGun() -> GunNumber { GunNumber(raw: readInteger(as: UInt8.self) ?? 0) }
    @inlinable
    mutating func ykcReadTradeSerial() -> TradeSerial { TradeSerial.read(from: &self) ?? .zero }
    @inlinable
    mutating func ykcReadBinaryID() -> BinaryID { BinaryID.read(from: &self) ?? .zero }
    @inlinable
    mutating func ykcReadCP56() -> CP56Time2a {
        CP56Time2a.read(from: &self)
            ?? CP56Time2a(milliseconds: 0, minuteByte: 0, hourByte: 0, dayByte: 0, monthByte: 0, yearByte: 0)
    }
    mutating func ykcReadBCD(_ n: Int) -> BCDDigits {
        BCDDigits.read(from: &self, byteCount: n) ?? BCDDigits(stringLiteral: String(repeating: "0", count: 2 * n))
    }
    mutating func ykcReadHex(_ n: Int) -> HexBytes { HexBytes.read(from: &self, count: n) ?? HexBytes(zeros: n) }
    mutating func ykcReadASCII(_ n: Int, reversed: Bool = false) -> String {
        FixedASCII.read(from: &self, count: n, reversed: reversed) ?? ""
    }
    /// Text whose length is given by a length byte: every byte is kept (Latin-1 scalars, including
    /// trailing 0x00), so the length byte re-encodes to the same value.
    mutating func ykcReadASCIIExact(_ n: Int) -> String {
        guard let slice = readSlice(length: n) else { return "" }
        var s = String.UnicodeScalarView()
        for b in slice.readableBytesView { s.append(UnicodeScalar(b)) }
        return String(s)
    }
}

/// JSON readers used by the generated `init(json:)`: each names the field in its error.
enum JSONField {
    static func object(_ json: JSONValue) throws(YKCJSONError) -> [String: JSONValue] {
        guard let o = json.objectValue else { throw .notAnObject }
        return o
    }

    static func pileId(_ v: JSONValue?, _ field: String) throws(YKCJSONError) -> PileID {
        guard let v else { throw .missing(field: field) }
        if let s = v.stringValue, let p = PileID(input: s) { return p }
        if let i = v.intValue, i >= 0, let p = PileID(input: String(i)) { return p }
        throw .invalid(field: field, reason: "expected \(PileID.inputRule)")
    }

    static func gun(_ v: JSONValue?, _ field: String) throws(YKCJSONError) -> GunNumber {
        guard let v else { throw .missing(field: field) }
        if let i = v.intValue, let g = GunNumber(number: i) { return g }
        if let s = v.stringValue, let i = Int(s), let g = GunNumber(number: i) { return g }
        throw .invalid(field: field, reason: "expected a gun number 0...99")
    }

    static func tradeSerial(_ v: JSONValue?, _ field: String) throws(YKCJSONError) -> TradeSerial {
        guard let v else { throw .missing(field: field) }
        if let s = v.stringValue, let t = TradeSerial(s) { return t }
        throw .invalid(field: field, reason: "expected up to 32 digits")
    }

    static func binaryId(_ v: JSONValue?, _ field: String) throws(YKCJSONError) -> BinaryID {
        guard let v else { throw .missing(field: field) }
        if let s = v.stringValue, let b = BinaryID(s) { return b }
        if let i = v.intValue, i >= 0 { return BinaryID(raw: UInt64(i)) }
        throw .invalid(field: field, reason: "expected up to 16 hex digits")
    }

    static func bcd(_ v: JSONValue?, _ field: String, bytes: Int) throws(YKCJSONError) -> BCDDigits {
        guard let v else { throw .missing(field: field) }
        let text = v.stringValue ?? v.intValue.map { String($0) }
        if let text, let b = BCDDigits(text, byteCount: bytes) { return b }
        throw .invalid(field: field, reason: "expected up to \(2 * bytes) digits")
    }

    static func hex(_ v: JSONValue?, _ field: String, bytes: Int, default def: Bool) throws(YKCJSONError) -> HexBytes {
        guard let v else {
            if def { return HexBytes(zeros: bytes) }
            throw .missing(field: field)
        }
        if let s = v.stringValue, let h = HexBytes(hex: s), h.bytes.count <= bytes {
            return HexBytes([UInt8](repeating: 0, count: bytes - h.bytes.count) + h.bytes)
        }
        throw .invalid(field: field, reason: "expected up to \(2 * bytes) hex digits")
    }

    static func ascii(_ v: JSONValue?, _ field: String, maxBytes: Int?) throws(YKCJSONError) -> String {
        guard let v else { throw .missing(field: field) }
        guard let s = v.stringValue else { throw .invalid(field: field, reason: "expected a string") }
        guard s.unicodeScalars.allSatisfy({ $0.value <= 0xFF }) else {
            throw .invalid(field: field, reason: "only ASCII/Latin-1 characters fit the field")
        }
        if let maxBytes, s.unicodeScalars.count > maxBytes {
            throw .invalid(field: field, reason: "longer than \(maxBytes) bytes")
        }
        return s
    }

    static func time(_ v: JSONValue?, _ field: String) throws(YKCJSONError) -> CP56Time2a {
        guard let v else { throw .missing(field: field) }
        if let s = v.stringValue, let t = CP56Time2a(iso8601: s) { return t }
        throw .invalid(
            field: field,
            reason: "expected an ISO 8601 time in years 2000...2127 with at most millisecond precision, like 2024-01-02T03:04:05+08:00, got \(v)")
    }

    static func uint<I: FixedWidthInteger & UnsignedInteger>(
        _ v: JSONValue?, _ field: String, default def: I? = nil
    ) throws(YKCJSONError) -> I {
        guard let v else {
            if let def { return def }
            throw .missing(field: field)
        }
        if let i = v.intValue, i >= 0, let r = I(exactly: i) { return r }
        if let s = v.stringValue, let i = UInt64(s), let r = I(exactly: i) { return r }
        throw .invalid(field: field, reason: "expected an integer 0...\(I.max)")
    }

    /// A decimal field: a JSON number or a decimal string, taken exactly. A value the field cannot
    /// carry exactly (more decimals than its scale, outside its range) is refused with the range,
    /// the same rule for numbers and strings — never rounded, clamped or trapped on.
    static func decimal(
        _ v: JSONValue?, _ field: String, scale: Int, add: Int64, bytes: Int
    ) throws(YKCJSONError) -> YKCDecimal {
        guard let v else { throw .missing(field: field) }
        var d: YKCDecimal?
        if let s = v.stringValue { d = YKCDecimal(s) } else if let n = v.doubleValue { d = YKCDecimal(exactly: n) }
        guard let d, let raw = d.raw(scale: scale, offset: add, byteCount: bytes) else {
            let range = YKCDecimal.fieldRange(scale: scale, offset: add, byteCount: bytes)
            throw .invalid(
                field: field,
                reason: "expected a number \(range.lowerBound)...\(range.upperBound) with at most \(scale) decimals, got \(v)")
        }
        return YKCDecimal(raw: raw, scale: scale, offset: add)
    }

    static func array(_ v: JSONValue?, _ field: String) throws(YKCJSONError) -> [JSONValue] {
        guard let v else { throw .missing(field: field) }
        guard let a = v.arrayValue else { throw .invalid(field: field, reason: "expected an array") }
        return a
    }

    static func bits<I: FixedWidthInteger & UnsignedInteger>(_ v: JSONValue?, _ field: String) throws(YKCJSONError) -> I {
        guard let v else { throw .missing(field: field) }
        if let i = v.intValue, i >= 0, let r = I(exactly: i) { return r }
        if let raw = v["raw"]?.intValue, raw >= 0, let r = I(exactly: raw) { return r }
        throw .invalid(field: field, reason: "expected an integer or an object with 'raw'")
    }
}
