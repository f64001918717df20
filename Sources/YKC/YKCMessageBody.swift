import NIOCore

/// Which side sends a frame. Pile-originated codes are odd, platform-originated codes even.
public enum YKCDirection: String, Sendable {
    case pileToPlatform = "pile_to_platform"
    case platformToPile = "platform_to_pile"
}

/// A typed YKC frame body: one per frame type, generated into `Generated/Messages/`.
///
/// Every conforming type decodes from exactly its body bytes, encodes back to the same bytes
/// (raw values, padding and flag bits are kept), and has a JSON form whose member names are the
/// field names of `protocol-specs/ykc-v1.6.json`.
public protocol YKCMessageBody: Sendable, Hashable {
    static var code: UInt8 { get }
    /// snake_case name, the event type name backends subscribe to.
    static var name: String { get }
    static var direction: YKCDirection { get }
    /// The body length for fixed-size frames; nil for variable-size ones.
    static var bodyLength: Int? { get }

    init(decoding body: inout ByteBuffer) throws(YKCDecodeError)
    init(json: JSONValue) throws(YKCJSONError)
    func encode(into buffer: inout ByteBuffer)
    func writeJSON(into json: inout JSONWriter)
}

extension YKCMessageBody {
    /// The complete frame for this body with the given sequence bytes.
    public func frame(sequence: YKCSequence, encryption: UInt8 = 0) -> YKCFrame {
        var body = ByteBuffer()
        body.reserveCapacity(Self.bodyLength ?? 64)
        encode(into: &body)
        return YKCFrame(sequence: sequence, encryption: encryption, code: Self.code, body: body)
    }

    /// Writes the complete frame (header, body, CRC) straight into `buffer`.
    @inlinable
    public func writeFrame(sequence: YKCSequence, into buffer: inout ByteBuffer) {
        YKCFrame.write(sequence: sequence, code: Self.code, into: &buffer) { self.encode(into: &$0) }
    }

    /// The JSON object of this body as text.
    public var jsonString: String {
        var w = JSONWriter()
        writeJSON(into: &w)
        return w.string
    }
}

/// Why a frame's body could not be decoded as its type; such a frame becomes a `RawMessage`.
public enum YKCDecodeError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The type code is not in the catalogue.
    case unknownType(UInt8)
    /// The body length does not match the type (later protocol variants, vendor forks).
    case lengthMismatch(expected: String, actual: Int)
    /// A count or length byte disagrees with the body size.
    case countMismatch(field: String, count: Int, bodyLength: Int)
    /// The body is 3DES-encrypted (flag 0x01) and no key scheme is configured.
    case encrypted

    public var kind: String {
        switch self {
        case .unknownType: "unknown_type"
        case .lengthMismatch: "length_mismatch"
        case .countMismatch: "count_mismatch"
        case .encrypted: "encrypted"
        }
    }

    public var description: String {
        switch self {
        case .unknownType(let c): "unknown frame type 0x\(hexByte(c))"
        case .lengthMismatch(let e, let a): "body length \(a) does not match the type (expected \(e))"
        case .countMismatch(let f, let c, let l): "\(f) = \(c) does not fit a body of \(l) bytes"
        case .encrypted: "body is encrypted (flag 0x01); no key scheme configured"
        }
    }
}

/// A frame kept as bytes because it could not be decoded as a typed message, with the reason.
/// Nothing is dropped: a gateway forwards it, logs it and counts it.
public struct RawMessage: Sendable, Hashable {
    public var code: UInt8
    public var body: ByteBuffer
    public var reason: YKCDecodeError

    public init(code: UInt8, body: ByteBuffer, reason: YKCDecodeError) {
        self.code = code
        self.body = body
        self.reason = reason
    }

    /// Transaction-record variants (0x3B of another length, V1.4's 0x3F, V1.7's 0x3D) start with
    /// the trade serial, so it can still key deduplication.
    public var tradeSerial: TradeSerial? {
        guard [0x3B, 0x3D, 0x3F].contains(code), body.readableBytes >= 16 else { return nil }
        var b = body
        return TradeSerial.read(from: &b)
    }

    /// The pile id where the variant's layout is known to carry it (after the trade serial).
    public var pileId: PileID? {
        guard tradeSerial != nil, body.readableBytes >= 23 else { return nil }
        var b = body
        b.moveReaderIndex(forwardBy: 16)
        return PileID.read(from: &b)
    }

    public func writeJSON(into json: inout JSONWriter) {
        json.beginObject()
        json.field("reason", reason.kind)
        json.field("message", reason.description)
        json.field("bodyHex", HexBytes(Array(body.readableBytesView)).description)
        if let t = tradeSerial { json.field("tradeSerial", t.description) }
        if let p = pileId { json.field("pileId", p.description) }
        json.endObject()
    }
}

/// A C-like enum of one byte whose unknown values are kept (`.unrecognized`), never rejected.
public protocol YKCEnum: Sendable, Hashable {
    init(rawValue: UInt8)
    var rawValue: UInt8 { get }
    /// The snake_case name of a known case; nil for an unrecognized value.
    var name: String? { get }
    init?(name: String)
}

extension YKCEnum {
    /// JSON: the case name, or the number when the value is not a known case.
    func writeJSON(into json: inout JSONWriter) {
        if let name { json.string(name) } else { json.int(rawValue) }
    }

    /// Accepts a case name or a number 0…255.
    static func parse(_ value: JSONValue?, field: String) throws(YKCJSONError) -> Self {
        guard let value else { throw .missing(field: field) }
        if let s = value.stringValue {
            if let v = Self(name: s) { return v }
            throw .invalid(field: field, reason: "unknown value '\(s)'")
        }
        if let i = value.intValue, (0...255).contains(i) { return Self(rawValue: UInt8(i)) }
        throw .invalid(field: field, reason: "expected a name or a number 0...255")
    }
}
