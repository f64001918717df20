import Logging

/// Escapes control characters in log messages and metadata values, so a value that came from
/// outside (a backend's service name, a request path, a token name, a pile's firmware text) can
/// neither end the log line and forge the next one nor put terminal escapes into the log.
///
/// swift-log's `StreamLogHandler` writes metadata values as they are (`key=value`, no quoting),
/// so a value holding "\n2026-… critical …" reads as a line of its own. `LiveLevelLogHandler`
/// passes every event through `escape(_:)`: CR, LF, the other C0 controls, DEL and the Unicode
/// line and paragraph separators become `\n`, `\r`, `\t` or `\u{XX}`. Values without such
/// characters (nearly all) are passed on untouched, without a copy.
public enum LogLineEscaper {
    /// `event` with its message and metadata values escaped.
    public static func escape(_ event: LogEvent) -> LogEvent {
        var event = event
        if needsEscaping(event.message.description) { event.message = Logger.Message(stringLiteral: escape(event.message.description)) }
        if let metadata = event.metadata, metadata.values.contains(where: needsEscaping) {
            event.metadata = metadata.mapValues(escape)
        }
        return event
    }

    /// Whether `value` (or anything in it) holds a character `escape` rewrites.
    static func needsEscaping(_ value: Logger.MetadataValue) -> Bool {
        switch value {
        case .string(let s): needsEscaping(s)
        case .stringConvertible(let c): needsEscaping(c.description)
        case .array(let a): a.contains(where: needsEscaping)
        case .dictionary(let d): d.keys.contains(where: needsEscaping) || d.values.contains(where: needsEscaping)
        }
    }

    static func escape(_ value: Logger.MetadataValue) -> Logger.MetadataValue {
        switch value {
        case .string(let s): needsEscaping(s) ? .string(escape(s)) : value
        case .stringConvertible(let c): needsEscaping(c.description) ? .string(escape(c.description)) : value
        case .array(let a): .array(a.map(escape))
        case .dictionary(let d):
            .dictionary(Dictionary(d.map { (escape($0.key), escape($0.value)) }, uniquingKeysWith: { a, _ in a }))
        }
    }

    public static func needsEscaping(_ s: String) -> Bool {
        s.unicodeScalars.contains(where: isEscaped)
    }

    /// `s` with every control character written as an escape sequence.
    public static func escape(_ s: String) -> String {
        guard needsEscaping(s) else { return s }
        var out = ""
        out.reserveCapacity(s.utf8.count + 8)
        for scalar in s.unicodeScalars {
            guard isEscaped(scalar) else {
                out.unicodeScalars.append(scalar)
                continue
            }
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default: out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
        }
        return out
    }

    private static func isEscaped(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value) || scalar.value == 0x2028
            || scalar.value == 0x2029
    }
}
