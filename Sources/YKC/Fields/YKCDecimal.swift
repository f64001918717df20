/// An exact decimal: `units × 10^-scale`. Money, energy, volts and amperes in YKC are integers
/// scaled by powers of ten (facts §1.3); keeping them as integers avoids float drift
/// (0.1 + 0.2 is 0.3 here).
public struct YKCDecimal: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var units: Int64
    public var scale: Int

    public init(units: Int64, scale: Int) {
        self.units = units
        self.scale = scale
    }

    /// The field value of a raw wire integer: `raw × 10^-scale + offset` (offset in whole units,
    /// e.g. −50 °C or −400 A).
    @inlinable
    public init(raw: UInt64, scale: Int, offset: Int64 = 0) {
        self.units = Int64(bitPattern: raw) + offset * pow10(scale)
        self.scale = scale
    }

    /// The raw wire integer for this value at a field's scale and offset; nil if it does not fit
    /// `byteCount` bytes or is not a whole number of the field's units.
    public func raw(scale fieldScale: Int, offset: Int64 = 0, byteCount: Int) -> UInt64? {
        guard let units = rescaled(to: fieldScale) else { return nil }
        let raw = units - offset * pow10(fieldScale)
        let max: UInt64 = byteCount >= 8 ? .max : (1 << UInt64(8 * byteCount)) - 1
        guard raw >= 0, UInt64(raw) <= max else { return nil }
        return UInt64(raw)
    }

    /// The units at another scale, when exact.
    public func rescaled(to target: Int) -> Int64? {
        if target == scale { return units }
        if target > scale {
            let (r, o) = units.multipliedReportingOverflow(by: pow10(target - scale))
            return o ? nil : r
        }
        let f = pow10(scale - target)
        return units % f == 0 ? units / f : nil
    }

    /// Parses a decimal literal such as "-343.2", "0.89", "12".
    public init?(_ text: String) {
        var units: Int64 = 0
        var scale = 0
        var seenDot = false
        var negative = false
        var digits = 0
        for (i, c) in text.utf8.enumerated() {
            if i == 0 && (c == UInt8(ascii: "-") || c == UInt8(ascii: "+")) {
                negative = c == UInt8(ascii: "-")
                continue
            }
            if c == UInt8(ascii: ".") && !seenDot {
                seenDot = true
                continue
            }
            guard c >= 48 && c <= 57, digits < 18 else { return nil }
            units = units * 10 + Int64(c - 48)
            digits += 1
            if seenDot { scale += 1 }
        }
        guard digits > 0 else { return nil }
        self.units = negative ? -units : units
        self.scale = scale
    }

    /// From a double, rounded to `scale` places (JSON numbers arrive as doubles).
    public init(_ value: Double, scale: Int) {
        self.units = Int64((value * Double(pow10(scale))).rounded())
        self.scale = scale
    }

    public var doubleValue: Double { Double(units) / Double(pow10(scale)) }

    /// Exact decimal text with exactly `scale` fraction digits ("2.00000", "-343.2", "25").
    public var description: String {
        if scale <= 0 { return String(units * pow10(-scale)) }
        let negative = units < 0
        let mag = units.magnitude
        let f = UInt64(pow10(scale))
        var frac = String(mag % f)
        if frac.count < scale { frac = String(repeating: "0", count: scale - frac.count) + frac }
        return (negative ? "-" : "") + String(mag / f) + "." + frac
    }

    public static func == (lhs: YKCDecimal, rhs: YKCDecimal) -> Bool {
        let s = max(lhs.scale, rhs.scale)
        return lhs.rescaled(to: s) == rhs.rescaled(to: s)
    }

    public func hash(into hasher: inout Hasher) {
        var u = units
        var s = scale
        while s > 0 && u % 10 == 0 {
            u /= 10
            s -= 1
        }
        hasher.combine(u)
        hasher.combine(s)
    }

    public static func < (lhs: YKCDecimal, rhs: YKCDecimal) -> Bool {
        let s = max(lhs.scale, rhs.scale)
        return (lhs.rescaled(to: s) ?? 0) < (rhs.rescaled(to: s) ?? 0)
    }
}

@inlinable
func pow10(_ n: Int) -> Int64 {
    var r: Int64 = 1
    for _ in 0..<max(n, 0) { r &*= 10 }
    return r
}
