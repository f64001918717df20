import Foundation
import NIOCore

/// A 7-byte IEC 60870-5-104 time (docs/ykc/PROTOCOL-FACTS.md §1.3): ms-in-minute (LE u16), minute (bits 0–5, IV bit 7),
/// hour (bits 0–4, SU bit 7), day (bits 0–4, weekday bits 5–7), month (bits 0–3), year − 2000.
///
/// The raw bytes are kept so a frame re-encodes exactly (flags and weekday included); the calendar
/// components mask the flag bits. Piles keep local (Beijing) wall-clock time; the frame has no zone.
public struct CP56Time2a: Hashable, Sendable, CustomStringConvertible {
    public var milliseconds: UInt16
    public var minuteByte: UInt8
    public var hourByte: UInt8
    public var dayByte: UInt8
    public var monthByte: UInt8
    public var yearByte: UInt8

    public init(milliseconds: UInt16, minuteByte: UInt8, hourByte: UInt8, dayByte: UInt8, monthByte: UInt8, yearByte: UInt8) {
        self.milliseconds = milliseconds
        self.minuteByte = minuteByte
        self.hourByte = hourByte
        self.dayByte = dayByte
        self.monthByte = monthByte
        self.yearByte = yearByte
    }

    /// A time from calendar components (year 2000…2127).
    public init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, millisecond: Int = 0) {
        self.milliseconds = UInt16(clamping: second * 1000 + millisecond)
        self.minuteByte = UInt8(clamping: minute) & 0x3F
        self.hourByte = UInt8(clamping: hour) & 0x1F
        self.dayByte = UInt8(clamping: day) & 0x1F
        self.monthByte = UInt8(clamping: month) & 0x0F
        self.yearByte = UInt8(clamping: year - 2000) & 0x7F
    }

    /// A time from calendar components, exactly: nil unless every component is a real calendar
    /// value the 7 bytes carry (year 2000...2127, month 1...12, a day of that month, hour 0...23,
    /// minute and second 0...59, millisecond 0...999). The non-failable initializer above masks
    /// out-of-range values (2200 becomes 2072); input from outside comes through this one.
    public init?(
        exactlyYear year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, millisecond: Int = 0
    ) {
        guard (2000...2127).contains(year), (1...12).contains(month), (1...daysInMonth(year, month)).contains(day),
            (0...23).contains(hour), (0...59).contains(minute), (0...59).contains(second), (0...999).contains(millisecond)
        else { return nil }
        self.init(year: year, month: month, day: day, hour: hour, minute: minute, second: second, millisecond: millisecond)
    }

    /// The wall-clock time of `date` at `utcOffsetSeconds`, exactly: nil when it falls outside
    /// the years 2000...2127 the frame carries.
    public init?(exactly date: Date, utcOffsetSeconds: Int = 8 * 3600) {
        guard date.timeIntervalSince1970.isFinite, abs(date.timeIntervalSince1970) < 1e11 else { return nil }
        let c = Self.wallClock(date, utcOffsetSeconds: utcOffsetSeconds)
        self.init(exactlyYear: c.y, month: c.m, day: c.d, hour: c.h, minute: c.mi, second: c.s, millisecond: c.ms)
    }

    /// The wall-clock time of `date` at `utcOffsetSeconds` (default +08:00, China Standard Time).
    /// For the gateway's own clock; a date outside 2000...2127 is masked (see `init?(exactly:)`).
    public init(date: Date, utcOffsetSeconds: Int = 8 * 3600) {
        let c = Self.wallClock(date, utcOffsetSeconds: utcOffsetSeconds)
        self.init(year: c.y, month: c.m, day: c.d, hour: c.h, minute: c.mi, second: c.s, millisecond: c.ms)
    }

    private static func wallClock(
        _ date: Date, utcOffsetSeconds: Int
    ) -> (y: Int, m: Int, d: Int, h: Int, mi: Int, s: Int, ms: Int) {
        // Round to the nearest millisecond, not down: a Date built from a millisecond time (as when
        // parsing ISO 8601 with an offset) can sit a hair below it in binary floating point, and
        // rounding down lost a millisecond on the JSON → frame path.
        let totalMs = Int64((date.timeIntervalSince1970 * 1000).rounded()) + Int64(utcOffsetSeconds) * 1000
        let days = Int(totalMs.quotientFloorDiv(86_400_000))
        let msOfDay = Int(totalMs - Int64(days) * 86_400_000)
        let (y, m, d) = civilFromDays(days)
        return (y, m, d, msOfDay / 3_600_000, (msOfDay / 60_000) % 60, (msOfDay / 1000) % 60, msOfDay % 1000)
    }

    public var year: Int { 2000 + Int(yearByte & 0x7F) }
    public var month: Int { Int(monthByte & 0x0F) }
    public var day: Int { Int(dayByte & 0x1F) }
    public var hour: Int { Int(hourByte & 0x1F) }
    public var minute: Int { Int(minuteByte & 0x3F) }
    public var second: Int { Int(milliseconds / 1000) }
    public var millisecond: Int { Int(milliseconds % 1000) }
    /// The IV (invalid) flag of the minute byte.
    public var isInvalidFlagSet: Bool { minuteByte & 0x80 != 0 }

    /// True when the components form a real calendar time.
    public var isValid: Bool {
        (1...12).contains(month) && day >= 1 && day <= daysInMonth(year, month) && hour < 24 && minute < 60
            && milliseconds < 60_000
    }

    /// The instant, reading the wall clock at `utcOffsetSeconds`; nil for an impossible time.
    public func date(utcOffsetSeconds: Int = 8 * 3600) -> Date? {
        guard isValid else { return nil }
        let days = daysFromCivil(year, month, day)
        let seconds = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(utcOffsetSeconds)
        return Date(timeIntervalSince1970: Double(seconds) + Double(millisecond) / 1000)
    }

    /// ISO 8601 with milliseconds and the given offset, e.g. `2020-03-16T17:14:47.000+08:00`;
    /// for an impossible time, the 7 raw bytes in hex.
    public func iso8601(utcOffsetSeconds: Int = 8 * 3600) -> String {
        guard isValid else { return rawHex }
        let sign = utcOffsetSeconds < 0 ? "-" : "+"
        let off = abs(utcOffsetSeconds)
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(hour, 2)):\(pad(minute, 2)):\(pad(second, 2))"
            + ".\(pad(millisecond, 3))\(sign)\(pad(off / 3600, 2)):\(pad((off / 60) % 60, 2))"
    }

    /// Parses what `iso8601` prints (a `Z` or ±hh:mm offset converts to `utcOffsetSeconds` wall time;
    /// no offset means wall time as given), or 14 hex digits of raw bytes.
    public init?(iso8601 text: String, utcOffsetSeconds: Int = 8 * 3600) {
        if text.utf8.count == 14, let raw = HexBytes(hex: text) {
            var buf = ByteBuffer(bytes: raw.bytes)
            guard let t = CP56Time2a.read(from: &buf) else { return nil }
            self = t
            return
        }
        let u = Array(text.utf8)
        func num(_ from: Int, _ len: Int) -> Int? {
            guard from + len <= u.count else { return nil }
            var v = 0
            for c in u[from..<(from + len)] {
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
            }
            return v
        }
        guard u.count >= 19, let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2), let h = num(11, 2),
            let mi = num(14, 2), let s = num(17, 2)
        else { return nil }
        var idx = 19
        var ms = 0
        if idx < u.count && u[idx] == UInt8(ascii: ".") {
            var digits = 0
            idx += 1
            while idx < u.count, u[idx] >= 48, u[idx] <= 57 {
                if digits < 3 {
                    ms = ms * 10 + Int(u[idx] - 48)
                } else if u[idx] != 48 {
                    return nil  // finer than a millisecond: the frame cannot carry it
                }
                digits += 1
                idx += 1
            }
            guard digits > 0 else { return nil }
            while digits < 3 { ms *= 10; digits += 1 }
        }
        guard u[4] == UInt8(ascii: "-"), u[7] == UInt8(ascii: "-"), u[10] == UInt8(ascii: "T") || u[10] == UInt8(ascii: " "),
            u[13] == UInt8(ascii: ":"), u[16] == UInt8(ascii: ":"),
            let wall = CP56Time2a(exactlyYear: y, month: mo, day: d, hour: h, minute: mi, second: s, millisecond: ms)
        else { return nil }
        if idx == u.count {
            self = wall
            return
        }
        var offset = 0
        if u[idx] == UInt8(ascii: "Z") {
            offset = 0
        } else if u[idx] == UInt8(ascii: "+") || u[idx] == UInt8(ascii: "-"), let oh = num(idx + 1, 2), let om = num(idx + 4, 2) {
            offset = (oh * 3600 + om * 60) * (u[idx] == UInt8(ascii: "-") ? -1 : 1)
        } else {
            return nil
        }
        guard idx + 6 == u.count || u[idx] == UInt8(ascii: "Z") && idx + 1 == u.count else { return nil }
        guard let instant = wall.date(utcOffsetSeconds: offset),
            let local = CP56Time2a(exactly: instant, utcOffsetSeconds: utcOffsetSeconds)
        else { return nil }
        self = local
    }

    public var description: String { iso8601() }

    public var rawHex: String {
        var b = ByteBuffer()
        write(to: &b)
        return HexBytes(Array(b.readableBytesView)).description
    }

    @inlinable
    public static func read(from buffer: inout ByteBuffer) -> CP56Time2a? {
        guard let ms = buffer.readInteger(endianness: .little, as: UInt16.self),
            let rest = buffer.readMultipleIntegers(as: (UInt8, UInt8, UInt8, UInt8, UInt8).self)
        else { return nil }
        return CP56Time2a(
            milliseconds: ms, minuteByte: rest.0, hourByte: rest.1, dayByte: rest.2, monthByte: rest.3,
            yearByte: rest.4)
    }

    @inlinable
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(milliseconds, endianness: .little)
        buffer.writeMultipleIntegers(minuteByte, hourByte, dayByte, monthByte, yearByte)
    }
}

private func pad(_ v: Int, _ width: Int) -> String {
    let s = String(v)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}

private func isLeap(_ y: Int) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

private func daysInMonth(_ y: Int, _ m: Int) -> Int {
    switch m {
    case 2: isLeap(y) ? 29 : 28
    case 4, 6, 9, 11: 30
    default: 31
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
private func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
    let y = m <= 2 ? y0 - 1 : y0
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
}

func civilFromDays(_ z0: Int) -> (Int, Int, Int) {
    let z = z0 + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let y = yoe + era * 400
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    return (m <= 2 ? y + 1 : y, m, d)
}

extension Int64 {
    fileprivate func quotientFloorDiv(_ d: Int64) -> Int64 {
        let q = self / d
        return (self % d != 0 && (self < 0) != (d < 0)) ? q - 1 : q
    }
}
