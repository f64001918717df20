/// A forward-only reader of one JSON text (RFC 8259) in UTF-8 bytes: it walks an object's members
/// by key, decodes the string values it is asked for and skips every other value, checking the
/// grammar as it goes.
///
/// Why not `JSONSerialization`/`JSONDecoder`: `pilegate tail` is the backend side of the hub
/// benchmarks (scripts/bench-hub.sh, scripts/bench-bills.sh) and reads every event the gateway
/// delivers, tens of thousands a second, to take three fields of the envelope (`type`, `id`,
/// `receivedAt`). Foundation would build a dictionary of boxed values, the event's `data`
/// included, for each one; this reads the bytes in place, allocates only the strings it returns,
/// and keeps the subscriber from becoming what the benchmark measures.
///
/// Bounded on any input: every step consumes at least one byte or throws, nesting deeper than
/// `maxDepth` throws, and malformed or truncated input is a `JSONScanner.Failure`, never a trap.
struct JSONScanner {
    /// Why a text is not the JSON the caller asked for; `offset` is the byte where it went wrong.
    enum Failure: Error, Equatable {
        case truncated(offset: Int)
        case unexpected(byte: UInt8, offset: Int)
        case invalidEscape(offset: Int)
        case invalidUnicodeEscape(offset: Int)
        case invalidNumber(offset: Int)
        case tooDeep(offset: Int)
        case trailingBytes(offset: Int)
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    /// The next byte to read.
    private(set) var offset = 0
    let maxDepth: Int
    /// Inside the object `members` walks, whether a member was read (a `,` must come next).
    private var afterFirstMember = false

    init(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int = 64) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    // MARK: - Walking one object

    /// Consumes `{` (after any whitespace): the start of the object whose members follow.
    mutating func beginObject() throws(Failure) {
        try expect(UInt8(ascii: "{"))
        afterFirstMember = false
    }

    /// The next member's key, with the scanner left on its value (which the caller must read
    /// with `readString`, `readNumber` or `skipValue`); nil after the object's closing `}`.
    mutating func nextKey() throws(Failure) -> String? {
        skipWhitespace()
        let b = try peek()
        if b == UInt8(ascii: "}") {
            offset += 1
            return nil
        }
        if afterFirstMember {
            guard b == UInt8(ascii: ",") else { throw .unexpected(byte: b, offset: offset) }
            offset += 1
            skipWhitespace()
        }
        let key = try readString()
        try expect(UInt8(ascii: ":"))
        afterFirstMember = true
        return key
    }

    /// Checks that nothing but whitespace follows the value just read.
    func end() throws(Failure) {
        var i = offset
        while i < bytes.count && Self.isWhitespace(bytes[i]) { i += 1 }
        if i < bytes.count { throw .trailingBytes(offset: i) }
    }

    // MARK: - Values

    /// A string value, its escapes decoded (`\uD83D\uDE00` pairs into one scalar). A lone
    /// surrogate, a bad escape or a raw control character throws.
    mutating func readString() throws(Failure) -> String {
        skipWhitespace()
        try expect(UInt8(ascii: "\""))
        let start = offset
        // Fast path: no escape, so the value is the bytes as they are.
        while offset < bytes.count {
            let b = bytes[offset]
            if b == UInt8(ascii: "\"") {
                let value = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<offset]), as: UTF8.self)
                offset += 1
                return value
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw .unexpected(byte: b, offset: offset) }
            offset += 1
        }
        guard offset < bytes.count else { throw .truncated(offset: offset) }
        var utf8 = Array(UnsafeBufferPointer(rebasing: bytes[start..<offset]))
        while offset < bytes.count {
            let b = bytes[offset]
            switch b {
            case UInt8(ascii: "\""):
                offset += 1
                return String(decoding: utf8, as: UTF8.self)
            case UInt8(ascii: "\\"):
                let scalar = try readEscape()
                utf8.append(contentsOf: String(Character(scalar)).utf8)
            case 0..<0x20:
                throw .unexpected(byte: b, offset: offset)
            default:
                utf8.append(b)
                offset += 1
            }
        }
        throw .truncated(offset: offset)
    }

    /// A string value, or nil (the value skipped) when the value is of another kind.
    mutating func readStringIfString() throws(Failure) -> String? {
        skipWhitespace()
        if try peek() == UInt8(ascii: "\"") { return try readString() }
        try skipValue()
        return nil
    }

    /// A number value (`-`, integer part without leading zeros, optional fraction and exponent).
    mutating func readNumber() throws(Failure) -> Double {
        skipWhitespace()
        let start = offset
        try scanNumber()
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<offset]), as: UTF8.self)
        guard let value = Double(text) else { throw .invalidNumber(offset: start) }
        return value
    }

    /// Reads past one value of any kind, checking it; containers nest at most `maxDepth` deep.
    mutating func skipValue() throws(Failure) {
        try skipValue(depth: 0)
    }

    // MARK: - Internals

    private mutating func skipValue(depth: Int) throws(Failure) {
        skipWhitespace()
        let b = try peek()
        switch b {
        case UInt8(ascii: "\""):
            try skipString()
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            guard depth < maxDepth else { throw .tooDeep(offset: offset) }
            let isObject = b == UInt8(ascii: "{")
            let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
            offset += 1
            skipWhitespace()
            if try peek() == close {
                offset += 1
                return
            }
            while true {
                if isObject {
                    skipWhitespace()
                    try skipString()
                    try expect(UInt8(ascii: ":"))
                }
                try skipValue(depth: depth + 1)
                skipWhitespace()
                let next = try peek()
                offset += 1
                if next == close { return }
                guard next == UInt8(ascii: ",") else { throw .unexpected(byte: next, offset: offset - 1) }
            }
        case UInt8(ascii: "t"):
            try expectLiteral("true")
        case UInt8(ascii: "f"):
            try expectLiteral("false")
        case UInt8(ascii: "n"):
            try expectLiteral("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try scanNumber()
        default:
            throw .unexpected(byte: b, offset: offset)
        }
    }

    /// Past a string without building it; escapes are checked all the same.
    private mutating func skipString() throws(Failure) {
        try expect(UInt8(ascii: "\""))
        while offset < bytes.count {
            let b = bytes[offset]
            switch b {
            case UInt8(ascii: "\""):
                offset += 1
                return
            case UInt8(ascii: "\\"):
                _ = try readEscape()
            case 0..<0x20:
                throw .unexpected(byte: b, offset: offset)
            default:
                offset += 1
            }
        }
        throw .truncated(offset: offset)
    }

    /// One escape sequence at `offset` (on its backslash), as the scalar it stands for.
    private mutating func readEscape() throws(Failure) -> Unicode.Scalar {
        let at = offset
        guard offset + 1 < bytes.count else { throw .truncated(offset: bytes.count) }
        let e = bytes[offset + 1]
        offset += 2
        switch e {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            let unit = try hex4()
            switch unit {
            case 0xD800...0xDBFF:
                // A high surrogate must be followed by an escaped low one.
                guard offset + 1 < bytes.count else { throw .truncated(offset: bytes.count) }
                guard bytes[offset] == UInt8(ascii: "\\"), bytes[offset + 1] == UInt8(ascii: "u") else {
                    throw .invalidUnicodeEscape(offset: at)
                }
                offset += 2
                let low = try hex4()
                guard (0xDC00...0xDFFF).contains(low) else { throw .invalidUnicodeEscape(offset: at) }
                let value = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
                guard let scalar = Unicode.Scalar(value) else { throw .invalidUnicodeEscape(offset: at) }
                return scalar
            case 0xDC00...0xDFFF:
                throw .invalidUnicodeEscape(offset: at)
            default:
                guard let scalar = Unicode.Scalar(unit) else { throw .invalidUnicodeEscape(offset: at) }
                return scalar
            }
        default:
            throw .invalidEscape(offset: at)
        }
    }

    /// Four hex digits at `offset`.
    private mutating func hex4() throws(Failure) -> UInt16 {
        guard offset + 4 <= bytes.count else { throw .truncated(offset: bytes.count) }
        var value: UInt16 = 0
        for _ in 0..<4 {
            let b = bytes[offset]
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
            default: throw .invalidUnicodeEscape(offset: offset)
            }
            value = value << 4 | UInt16(digit)
            offset += 1
        }
        return value
    }

    /// Past a number, checking RFC 8259's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    private mutating func scanNumber() throws(Failure) {
        let start = offset
        if offset < bytes.count && bytes[offset] == UInt8(ascii: "-") { offset += 1 }
        guard offset < bytes.count else { throw .truncated(offset: offset) }
        if bytes[offset] == UInt8(ascii: "0") {
            offset += 1
        } else {
            guard digits() > 0 else { throw .invalidNumber(offset: start) }
        }
        if offset < bytes.count && bytes[offset] == UInt8(ascii: ".") {
            offset += 1
            guard digits() > 0 else { throw .invalidNumber(offset: start) }
        }
        if offset < bytes.count && (bytes[offset] == UInt8(ascii: "e") || bytes[offset] == UInt8(ascii: "E")) {
            offset += 1
            if offset < bytes.count && (bytes[offset] == UInt8(ascii: "+") || bytes[offset] == UInt8(ascii: "-")) {
                offset += 1
            }
            guard digits() > 0 else { throw .invalidNumber(offset: start) }
        }
        // A number runs into its delimiter; "01" or "1x" is not one number.
        if offset < bytes.count {
            let b = bytes[offset]
            if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) || b == UInt8(ascii: ".") || Self.isLetter(b) {
                throw .invalidNumber(offset: start)
            }
        }
    }

    /// Past a run of decimal digits; how many there were.
    private mutating func digits() -> Int {
        let start = offset
        while offset < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[offset]) { offset += 1 }
        return offset - start
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(Failure) {
        let n = literal.utf8CodeUnitCount
        let k = UnsafeBufferPointer(start: literal.utf8Start, count: n)
        for i in 0..<n {
            guard offset + i < bytes.count else { throw .truncated(offset: bytes.count) }
            guard bytes[offset + i] == k[i] else { throw .unexpected(byte: bytes[offset + i], offset: offset + i) }
        }
        offset += n
    }

    private mutating func expect(_ byte: UInt8) throws(Failure) {
        skipWhitespace()
        let b = try peek()
        guard b == byte else { throw .unexpected(byte: b, offset: offset) }
        offset += 1
    }

    private func peek() throws(Failure) -> UInt8 {
        guard offset < bytes.count else { throw .truncated(offset: offset) }
        return bytes[offset]
    }

    private mutating func skipWhitespace() {
        while offset < bytes.count && Self.isWhitespace(bytes[offset]) { offset += 1 }
    }

    private static func isWhitespace(_ b: UInt8) -> Bool {
        b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09
    }

    private static func isLetter(_ b: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b)
    }
}
