/// A firmware-version glob of a lane rule: `*` matches any run (also empty), `?` one character,
/// everything else itself (case-sensitive, as firmware strings are compared byte for byte).
///
/// Matching is the classic greedy-star backtrack: linear in practice, at worst
/// O(pattern × text), and both are at most 64 characters, so a login never pays more than a few
/// thousand comparisons whatever an operator writes.
struct LaneFirmwarePattern: Sendable, Hashable {
    static let maxLength = 64
    let scalars: [UInt32]

    enum ParseError: Error, Equatable {
        case invalid(String)
    }

    init(parsing text: String) throws(ParseError) {
        guard !text.isEmpty else { throw .invalid("empty pattern (use \"*\" for any firmware)") }
        let scalars = text.unicodeScalars.map(\.value)
        guard scalars.count <= Self.maxLength else {
            throw .invalid("longer than \(Self.maxLength) characters")
        }
        for s in scalars {
            guard s >= 0x20, s <= 0x7E else { throw .invalid("only printable ASCII is allowed") }
            if s == 0x5B || s == 0x5D || s == 0x5C {
                throw .invalid("'[', ']' and '\\' are not supported (only '*' and '?' are special)")
            }
        }
        self.scalars = scalars
    }

    /// Whether the firmware version matches; trailing NULs and spaces (padding of the 8-byte
    /// field) are ignored so "V1.2" matches a pile that sends "V1.2    ".
    func matches(_ firmware: String) -> Bool {
        var text = firmware.unicodeScalars.map(\.value)
        while let last = text.last, last == 0 || last == 0x20 { text.removeLast() }
        let p = scalars
        var pi = 0
        var ti = 0
        var star = -1
        var resume = 0
        while ti < text.count {
            if pi < p.count, p[pi] == 0x2A {
                star = pi
                resume = ti
                pi += 1
            } else if pi < p.count, p[pi] == 0x3F || p[pi] == text[ti] {
                pi += 1
                ti += 1
            } else if star >= 0 {
                pi = star + 1
                resume += 1
                ti = resume
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == 0x2A { pi += 1 }
        return pi == p.count
    }
}
