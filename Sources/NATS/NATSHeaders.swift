import NIOCore

/// The header block of an HPUB/HMSG: a `NATS/1.0` line with an optional status (503 no responders,
/// 404 no messages, 408 request timeout, 100 idle heartbeat) and ordered, possibly repeated fields.
///
/// Names are compared exactly, as the server and other clients do; order and repeats are kept because
/// JetStream reads some headers by first value and a relay must not reorder what it forwards.
public struct NATSHeaders: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    /// The status code on the `NATS/1.0` line, if any.
    public var status: Int?
    /// The text after the status code (e.g. "No Messages").
    public var statusDescription: String
    /// Fields in order.
    public private(set) var fields: [(name: String, value: String)]

    public init() {
        self.status = nil
        self.statusDescription = ""
        self.fields = []
    }

    public init(status: Int?, statusDescription: String = "") {
        self.status = status
        self.statusDescription = statusDescription
        self.fields = []
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init()
        for (name, value) in elements { append(name, value) }
    }

    /// The first value for `name`; setting replaces every value for it (nil removes them).
    public subscript(name: String) -> String? {
        get { fields.first { $0.name == name }?.value }
        set {
            fields.removeAll { $0.name == name }
            if let newValue { fields.append((name, newValue)) }
        }
    }

    /// Every value for `name`, in order.
    public func values(for name: String) -> [String] {
        fields.filter { $0.name == name }.map(\.value)
    }

    /// Adds a value without removing earlier ones.
    public mutating func append(_ name: String, _ value: String) {
        fields.append((name, value))
    }

    public var isEmpty: Bool { fields.isEmpty && status == nil }

    public static func == (lhs: NATSHeaders, rhs: NATSHeaders) -> Bool {
        lhs.status == rhs.status && lhs.statusDescription == rhs.statusDescription
            && lhs.fields.elementsEqual(rhs.fields) { $0.name == $1.name && $0.value == $1.value }
    }

    /// Checks that names and values cannot break the header block (no CR/LF, no ':' in names).
    func validate() throws {
        for (name, value) in fields {
            if name.isEmpty || name.utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 58 || $0 == 32 }) {
                throw NATSError.protocolViolation("invalid header name '\(name)'")
            }
            if value.utf8.contains(where: { $0 == 13 || $0 == 10 }) {
                throw NATSError.protocolViolation("invalid header value for '\(name)'")
            }
        }
    }

    /// Writes the block, including the blank line that ends it; returns the number of bytes written.
    @discardableResult
    func write(to buffer: inout ByteBuffer) -> Int {
        var written = buffer.writeStaticString("NATS/1.0")
        if let status {
            written += buffer.writeString(" \(status)")
            if !statusDescription.isEmpty { written += buffer.writeString(" \(statusDescription)") }
        }
        written += buffer.writeStaticString("\r\n")
        for (name, value) in fields {
            written += buffer.writeString(name)
            written += buffer.writeStaticString(": ")
            written += buffer.writeString(value)
            written += buffer.writeStaticString("\r\n")
        }
        written += buffer.writeStaticString("\r\n")
        return written
    }

    /// Parses a header block (`NATS/1.0 …\r\n(Name: Value\r\n)*\r\n`).
    ///
    /// Every delivered JetStream message and every relayed cluster event carries one, so this works on
    /// the bytes: one scan for line ends, and a String only for each name and value kept.
    static func parse(_ bytes: ByteBufferView) throws -> NATSHeaders {
        let cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n"), space = UInt8(ascii: " "), colon = UInt8(ascii: ":")
        let prefix: StaticString = "NATS/1.0"
        let end = bytes.endIndex
        var i = bytes.startIndex
        guard bytes.count >= prefix.utf8CodeUnitCount,
            prefix.withUTF8Buffer({ p in p.indices.allSatisfy { bytes[i + $0] == p[$0] } })
        else {
            throw NATSError.protocolViolation("header block does not start with NATS/1.0")
        }
        /// The end of the line starting at `from`: the index of its CR (or LF, or the block's end).
        func lineEnd(_ from: Int) -> Int {
            var j = from
            while j < end, bytes[j] != cr, bytes[j] != lf { j += 1 }
            return j
        }
        func skipBreak(_ j: Int) -> Int {
            var k = j
            if k < end, bytes[k] == cr { k += 1 }
            if k < end, bytes[k] == lf { k += 1 }
            return k
        }
        func text(_ from: Int, _ to: Int) throws -> String {
            guard let s = String(validating: bytes[from..<to], as: UTF8.self) else {
                throw NATSError.protocolViolation("header block is not UTF-8")
            }
            return s
        }
        var headers = NATSHeaders()
        i += prefix.utf8CodeUnitCount
        let firstEnd = lineEnd(i)
        while i < firstEnd, bytes[i] == space { i += 1 }
        if i < firstEnd {
            var codeEnd = i
            var code = 0
            while codeEnd < firstEnd, bytes[codeEnd] != space {
                let digit = bytes[codeEnd] &- UInt8(ascii: "0")
                guard digit < 10, codeEnd - i < 6 else {
                    throw NATSError.protocolViolation("bad header status '\(try text(bytes.startIndex, firstEnd))'")
                }
                code = code * 10 + Int(digit)
                codeEnd += 1
            }
            headers.status = code
            var d = codeEnd
            while d < firstEnd, bytes[d] == space { d += 1 }
            headers.statusDescription = try text(d, firstEnd)
        }
        i = skipBreak(firstEnd)
        while i < end {
            let e = lineEnd(i)
            defer { i = skipBreak(e) }
            if e == i { continue }
            guard let c = bytes[i..<e].firstIndex(of: colon) else {
                throw NATSError.protocolViolation("header line without ':'")
            }
            var v = c + 1
            while v < e, bytes[v] == space { v += 1 }
            headers.fields.append((try text(i, c), try text(v, e)))
        }
        return headers
    }
}
