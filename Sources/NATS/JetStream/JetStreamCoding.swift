import Foundation

/// JetStream's JSON carries durations as integer nanoseconds.
extension KeyedEncodingContainer {
    mutating func encodeNanoseconds(_ duration: Duration?, forKey key: Key) throws {
        guard let duration else { return }
        try encode(duration.nanoseconds, forKey: key)
    }
}

extension KeyedDecodingContainer {
    func decodeNanoseconds(forKey key: Key) throws -> Duration? {
        guard let value = try decodeIfPresent(Int64.self, forKey: key) else { return nil }
        return .nanoseconds(value)
    }
}

extension Duration {
    /// Whole nanoseconds (JetStream's unit), saturating.
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return seconds < 0 ? .min : .max }
        return product.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
    }
}

enum JetStreamJSON {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            return parseDate(text) ?? Date(timeIntervalSince1970: 0)
        }
        return decoder
    }

    /// RFC 3339 with up to nanosecond fractions, as the server writes times.
    static func parseDate(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        // ISO8601DateFormatter handles at most milliseconds: trim longer fractions.
        var trimmed = text
        if let dot = text.firstIndex(of: "."),
            let zone = text[dot...].firstIndex(where: { $0 == "Z" || $0 == "+" || $0 == "-" })
        {
            let fraction = text[text.index(after: dot)..<zone].prefix(3)
            trimmed = String(text[..<dot]) + "." + fraction.padding(toLength: 3, withPad: "0", startingAt: 0)
                + String(text[zone...])
        }
        if let date = formatter.date(from: trimmed) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }
}

/// Used to look at an answer's error document before decoding the expected type.
struct APIErrorEnvelope: Decodable {
    var error: JetStreamAPIError?
}
