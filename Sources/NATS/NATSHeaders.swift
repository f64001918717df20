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
    static func parse(_ bytes: ByteBufferView) throws -> NATSHeaders {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw NATSError.protocolViolation("header block is not UTF-8")
        }
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)[...]
        guard let first = lines.popFirst(), first.hasPrefix("NATS/1.0") else {
            throw NATSError.protocolViolation("header block does not start with NATS/1.0")
        }
        var headers = NATSHeaders()
        let statusPart = first.dropFirst("NATS/1.0".count).drop { $0 == " " }
        if !statusPart.isEmpty {
            let code = statusPart.prefix { $0 != " " }
            guard let status = Int(code) else { throw NATSError.protocolViolation("bad header status '\(first)'") }
            headers.status = status
            headers.statusDescription = String(statusPart.dropFirst(code.count).drop { $0 == " " })
        }
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else {
                throw NATSError.protocolViolation("header line without ':'")
            }
            let name = String(line[..<colon])
            let value = String(line[line.index(after: colon)...].drop { $0 == " " })
            headers.append(name, value)
        }
        return headers
    }
}
