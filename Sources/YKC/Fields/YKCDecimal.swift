import Foundation

/// An exact decimal: `units × 10^-scale`. Money, energy, volts and amperes in YKC are integers
/// scaled by powers of ten (docs/ykc/PROTOCOL-FACTS.md §1.3); keeping them as integers avoids float drift
/// (0.1 + 0.2 is 0.3 here).
///
/// Every conversion from outside text or numbers is exact or refused: a value the frame cannot
/// carry (too many decimals, too large, negative) is an error, never silently rounded or trapped.
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
        guard let units = rescaled(to: fieldScale), let shift = Self.power(of: fieldScale) else { return nil }
        let (base, o1) = offset.multipliedReportingOverflow(by: shift)
        let (raw, o2) = units.subtractingReportingOverflow(base)
        guard !o1, !o2 else { return nil }
        let max: UInt64 = byteCount >= 8 ? .max : (1 << UInt64(8 * byteCount)) - 1
        guard raw >= 0, UInt64(raw) <= max else { return nil }
        return UInt64(raw)
    }

    /// The smallest and largest values a field of `byteCount` bytes at this scale and offset
    /// carries, for error messages ("0.00...42949672.95").
    public static func fieldRange(scale: Int, offset: Int64 = 0, byteCount: Int) -> ClosedRange<YKCDecimal> {
        let max: UInt64 = byteCount >= 8 ? UInt64(Int64.max) : (1 << UInt64(8 * byteCount)) - 1
        return YKCDecimal(raw: 0, scale: scale, offset: offset)...YKCDecimal(raw: max, scale: scale, offset: offset)
    }

    /// The units at another scale, when exact (nil when it would overflow or lose digits).
    public func rescaled(to target: Int) -> Int64? {
        if target == scale { return units }
        if target > scale {
            // 10^19 and up overflow Int64: only zero survives such a shift.
            guard let f = Self.power(of: target - scale) else { return units == 0 ? 0 : nil }
            let (r, o) = units.multipliedReportingOverflow(by: f)
            return o ? nil : r
        }
        // |units| < 10^19, so dividing by 10^19 or more is exact only for zero.
        guard let f = Self.power(of: scale - target) else { return units == 0 ? 0 : nil }
        return units % f == 0 ? units / f : nil
    }

    /// 10^n when it fits an Int64 (n ≤ 18), else nil.
    static func power(of n: Int) -> Int64? {
        guard (0...18).contains(n) else { return nil }
        return pow10(n)
    }

    /// Parses a decimal literal such as "-343.2", "0.89", "12", "1e-9", "2.5E+3": exactly, or nil
    /// when it has more than 18 significant digits or does not fit an Int64 of units (never a trap,
    /// never a rounded value).
    public init?(_ text: String) {
        var units: Int64 = 0
        var scale = 0
        var seenDot = false
        var negative = false
        var digits = 0
        var bytes = text.utf8[...]
        if let c = bytes.first, c == UInt8(ascii: "-") || c == UInt8(ascii: "+") {
            negative = c == UInt8(ascii: "-")
            bytes = bytes.dropFirst()
        }
        var exponentPart: Substring.UTF8View.SubSequence?
        while let c = bytes.first {
            bytes = bytes.dropFirst()
            if c == UInt8(ascii: ".") && !seenDot {
                seenDot = true
                continue
            }
            if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                exponentPart = bytes
                break
            }
            guard c >= 48 && c <= 57 else { return nil }
            if seenDot { scale += 1 }
            // Leading zeros are not significant ("0.000000000000000000001" is 1e-21).
            if units == 0 && c == 48 { digits = max(digits, 1); continue }
            guard digits < 18 || units == 0 else { return nil }
            units = units * 10 + Int64(c - 48)
            digits += 1
        }
        guard digits > 0 else { return nil }
        if let e = exponentPart {
            guard let exponent = Int(Substring(e)), (-1000...1000).contains(exponent) else { return nil }
            scale -= exponent
        }
        if scale < 0 {
            // A whole number with a positive exponent: multiply out, exactly or not at all.
            if let f = Self.power(of: -scale) {
                let (r, o) = units.multipliedReportingOverflow(by: f)
                guard !o else { return nil }
                units = r
            } else {
                guard units == 0 else { return nil }
            }
            scale = 0
        }
        // Trailing fraction zeros beyond what an Int64 scale can use are dropped, exactly.
        while scale > 18 && units % 10 == 0 && units != 0 {
            units /= 10
            scale -= 1
        }
        if units == 0 { scale = min(scale, 18) }
        guard scale <= 18 else { return nil }
        self.units = negative ? -units : units
        self.scale = scale
    }

    /// The exact decimal a JSON number stands for: its shortest round-trip text (what the sender
    /// wrote, for any number with up to 15 significant digits), parsed as above. Nil when it is
    /// not finite or does not fit; never rounded to a field's scale (that is `raw`'s check).
    public init?(exactly value: Double) {
        guard value.isFinite else { return nil }
        self.init(value.description)
    }

    public var doubleValue: Double { Double(units) / pow(10, Double(scale)) }

    /// Exact decimal text with exactly `scale` fraction digits ("2.00000", "-343.2", "25").
    public var description: String {
        let magnitude = String(units.magnitude)
        let sign = units < 0 ? "-" : ""
        if scale <= 0 { return units == 0 ? "0" : sign + magnitude + String(repeating: "0", count: -scale) }
        let padded = magnitude.count > scale ? magnitude : String(repeating: "0", count: scale + 1 - magnitude.count) + magnitude
        let cut = padded.index(padded.endIndex, offsetBy: -scale)
        return sign + padded[..<cut] + "." + padded[cut...]
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
        if let l = lhs.rescaled(to: s), let r = rhs.rescaled(to: s) { return l < r }
        return lhs.doubleValue < rhs.doubleValue
    }
}

@inlinable
func pow10(_ n: Int) -> Int64 {
    var r: Int64 = 1
    for _ in 0..<max(n, 0) { r &*= 10 }
    return r
}
