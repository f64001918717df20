import NIOCore

extension PubAck {
    init(stream: String, sequence: UInt64, duplicate: Bool, domain: String?) {
        self.stream = stream
        self.sequence = sequence
        self.duplicate = duplicate
        self.domain = domain
    }

    /// Reads a PubAck the way the server writes it, `{"stream":"S","seq":7}` with optional
    /// `"duplicate":true` and `"domain":"D"`, without `JSONDecoder`: a must-deliver event waits for one
    /// of these before its pile is answered, so it is on the per-bill path.
    ///
    /// Only a flat object of plain strings (no escapes), unsigned integers and booleans is taken; nil
    /// for anything else (an `error` object, escapes, an unknown shape), and the caller decodes the
    /// document in full, errors included.
    static func flat(_ bytes: ByteBufferView) -> PubAck? {
        var i = bytes.startIndex
        let end = bytes.endIndex
        func skipSpace() { while i < end, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i += 1 } }
        func expect(_ byte: UInt8) -> Bool {
            skipSpace()
            guard i < end, bytes[i] == byte else { return false }
            i += 1
            return true
        }
        /// A string without escapes; the bytes between the quotes.
        func plainString() -> Range<Int>? {
            guard expect(UInt8(ascii: "\"")) else { return nil }
            let start = i
            while i < end, bytes[i] != UInt8(ascii: "\"") {
                guard bytes[i] != UInt8(ascii: "\\"), bytes[i] >= 0x20 else { return nil }
                i += 1
            }
            guard i < end else { return nil }
            defer { i += 1 }
            return start..<i
        }
        func matches(_ r: Range<Int>, _ key: StaticString) -> Bool {
            key.withUTF8Buffer { bytes[r].elementsEqual($0) }
        }
        var stream: String?
        var sequence: UInt64?
        var duplicate = false
        var domain: String?
        guard expect(UInt8(ascii: "{")) else { return nil }
        skipSpace()
        if i < end, bytes[i] == UInt8(ascii: "}") { return nil }
        repeat {
            guard let key = plainString(), expect(UInt8(ascii: ":")) else { return nil }
            skipSpace()
            guard i < end else { return nil }
            switch bytes[i] {
            case UInt8(ascii: "\""):
                guard let value = plainString() else { return nil }
                let text = String(decoding: bytes[value], as: UTF8.self)
                if matches(key, "stream") { stream = text } else if matches(key, "domain") { domain = text }
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                let start = i
                while i < end, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") { i += 1 }
                guard let n = UInt64(decimal: bytes[start..<i]) else { return nil }
                if matches(key, "seq") { sequence = n }
            case UInt8(ascii: "t"), UInt8(ascii: "f"):
                let value = bytes[i] == UInt8(ascii: "t")
                let word: StaticString = value ? "true" : "false"
                let length = word.utf8CodeUnitCount
                guard end - i >= length, word.withUTF8Buffer({ bytes[i..<(i + length)].elementsEqual($0) }) else { return nil }
                i += length
                if matches(key, "duplicate") { duplicate = value }
            default:
                return nil  // an object (the error document), an array, null, a negative number
            }
        } while expect(UInt8(ascii: ","))
        guard expect(UInt8(ascii: "}")), let stream, let sequence else { return nil }
        skipSpace()
        guard i == end else { return nil }
        return PubAck(stream: stream, sequence: sequence, duplicate: duplicate, domain: domain)
    }
}
