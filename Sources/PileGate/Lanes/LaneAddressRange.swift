import Foundation

/// A CIDR block of a lane rule, IPv4 or IPv6, held as 128 bits.
///
/// IPv4 is kept in its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`, prefix + 96) so one comparison
/// covers both families, and a pile seen through a dual-stack socket as `::ffff:10.1.2.3` still
/// matches `10.0.0.0/8`. Parsing is done here rather than with `inet_pton` so the accepted
/// syntax is the same on every platform and a login never allocates a socket address.
struct LaneAddressRange: Sendable, Hashable {
    var high: UInt64
    var low: UInt64
    /// Prefix length over the 128-bit form.
    var prefix: Int

    /// An address as two 64-bit halves of the 128-bit (IPv6 or IPv4-mapped) form.
    struct Address: Sendable, Hashable {
        var high: UInt64
        var low: UInt64
        var isIPv4: Bool
    }

    enum ParseError: Error, Equatable {
        case invalid(String)
    }

    /// Parses "10.0.0.0/8", "::1/128", or a bare address (one host). Bits set beyond the prefix
    /// are refused: "10.0.0.1/8" is most likely a typo for a host or for "10.0.0.0/8", and
    /// silently masking it would route a different set of piles than the operator meant.
    init(parsing text: String) throws(ParseError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2 else { throw .invalid("more than one '/'") }
        guard let address = Self.parseAddress(parts[0], allowZone: false) else {
            throw .invalid("'\(parts[0])' is not an IPv4 or IPv6 address")
        }
        let maxLength = address.isIPv4 ? 32 : 128
        var length = maxLength
        if parts.count == 2 {
            let p = parts[1]
            guard !p.isEmpty, p.utf8.count <= 3, p.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let n = Int(p) else {
                throw .invalid("prefix length '\(p)' is not a number")
            }
            guard n <= maxLength else { throw .invalid("prefix length /\(n) exceeds /\(maxLength)") }
            length = n
        }
        let prefix = address.isIPv4 ? length + 96 : length
        let (hm, lm) = Self.mask(prefix)
        guard address.high & ~hm == 0, address.low & ~lm == 0 else {
            throw .invalid("address has bits set beyond the /\(length) prefix")
        }
        self.high = address.high
        self.low = address.low
        self.prefix = prefix
    }

    func contains(_ address: Address) -> Bool {
        let (hm, lm) = Self.mask(prefix)
        return address.high & hm == high && address.low & lm == low
    }

    /// Masks for a prefix over 128 bits; Swift's smart shifts give 0 for a shift of 64.
    static func mask(_ prefix: Int) -> (UInt64, UInt64) {
        let hm = UInt64.max << UInt64(64 - min(prefix, 64))
        let lm = prefix <= 64 ? 0 : UInt64.max << UInt64(128 - prefix)
        return (prefix == 0 ? 0 : hm, lm)
    }

    /// Parses a dotted-quad IPv4 or an IPv6 address (with `::` and an optional trailing dotted
    /// quad). With `allowZone`, a `%zone` suffix (link-local peers) is ignored.
    static func parseAddress(_ text: Substring, allowZone: Bool) -> Address? {
        var text = text
        if allowZone, let percent = text.firstIndex(of: "%") { text = text[..<percent] }
        if !text.contains(":") {
            guard let v4 = parseIPv4(text) else { return nil }
            return Address(high: 0, low: 0x0000_FFFF_0000_0000 | UInt64(v4), isIPv4: true)
        }
        guard let words = parseIPv6(text) else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for i in 0..<4 { high = high << 16 | UInt64(words[i]) }
        for i in 4..<8 { low = low << 16 | UInt64(words[i]) }
        return Address(high: high, low: low, isIPv4: false)
    }

    static func parseAddress(_ text: String) -> Address? { parseAddress(Substring(text), allowZone: true) }

    /// Four decimal parts 0–255, 1–3 digits each; no shorthand forms ("10.1"), which are legal
    /// for `inet_aton` but never what an operator means in a rule.
    static func parseIPv4(_ text: Substring) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.utf8.count), part.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                let n = UInt32(part), n <= 255
            else { return nil }
            value = value << 8 | n
        }
        return value
    }

    /// Eight 16-bit words; `::` stands for one or more zero words, at most once.
    static func parseIPv6(_ text: Substring) -> [UInt16]? {
        guard text.utf8.count <= 45 else { return nil }
        guard let gap = text.range(of: "::") else {
            guard let all = parseWords(text, allowIPv4Tail: true), all.count == 8 else { return nil }
            return all
        }
        let before = text[..<gap.lowerBound]
        let after = text[gap.upperBound...]
        guard !after.contains("::"),
            let head = parseWords(before, allowIPv4Tail: false),
            let tail = parseWords(after, allowIPv4Tail: true),
            head.count + tail.count <= 7
        else { return nil }
        return head + [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
    }

    /// Colon-separated hex words (1–4 digits), the last of which may be a dotted quad.
    private static func parseWords(_ text: Substring, allowIPv4Tail: Bool) -> [UInt16]? {
        if text.isEmpty { return [] }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        var words: [UInt16] = []
        for (i, part) in parts.enumerated() {
            if i == parts.count - 1, allowIPv4Tail, part.contains(".") {
                guard let v4 = parseIPv4(part) else { return nil }
                words.append(UInt16(v4 >> 16))
                words.append(UInt16(v4 & 0xFFFF))
                continue
            }
            guard (1...4).contains(part.utf8.count), let w = UInt16(part, radix: 16) else { return nil }
            words.append(w)
        }
        return words
    }
}
