/// What `tail` needs from one gateway message: its type, and for an event its id and `receivedAt`
/// (the envelope's own members: keys of the same name inside `data` are skipped with it). Read
/// with `JSONScanner`, without building the message; a text that is not one JSON object is `.other`.
struct TailScan {
    enum Kind { case event, subscribed, error, other }
    var kind: Kind = .other
    var id: String?
    var receivedAtMicros: Int64?

    static func parse(_ b: UnsafeBufferPointer<UInt8>) -> TailScan {
        var type: String?
        var id: String?
        var receivedAt: String?
        var scanner = JSONScanner(b)
        do {
            try scanner.beginObject()
            while let key = try scanner.nextKey() {
                switch key {
                case "type" where type == nil: type = try scanner.readStringIfString()
                case "id" where id == nil: id = try scanner.readStringIfString()
                case "receivedAt" where receivedAt == nil: receivedAt = try scanner.readStringIfString()
                default: try scanner.skipValue()
                }
            }
            try scanner.end()
        } catch {
            return TailScan()
        }
        var s = TailScan()
        switch type {
        case "event":
            s.kind = .event
            s.id = id
            if var text = receivedAt {
                s.receivedAtMicros = text.withUTF8 { parseTimestamp($0) }
            }
        case "subscribed": s.kind = .subscribed
        case "error": s.kind = .error
        default: break
        }
        return s
    }

    /// Microseconds since 1970 of `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH[:]MM)`, or nil.
    static func parseTimestamp(_ t: UnsafeBufferPointer<UInt8>) -> Int64? {
        func digits(_ at: Int, _ n: Int) -> Int? {
            guard at + n <= t.count else { return nil }
            var v = 0
            for i in at..<(at + n) {
                let d = Int(t[i]) - 48
                guard d >= 0 && d <= 9 else { return nil }
                v = v * 10 + d
            }
            return v
        }
        guard t.count >= 20, t[4] == UInt8(ascii: "-"), t[7] == UInt8(ascii: "-"), t[10] == UInt8(ascii: "T"),
            t[13] == UInt8(ascii: ":"), t[16] == UInt8(ascii: ":"),
            let year = digits(0, 4), let month = digits(5, 2), let day = digits(8, 2), let hour = digits(11, 2),
            let minute = digits(14, 2), let second = digits(17, 2), (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var i = 19
        var micros = 0
        if i < t.count && t[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 100_000
            while i < t.count, t[i] >= 48, t[i] <= 57 {
                micros += Int(t[i] - 48) * scale
                scale /= 10
                i += 1
            }
        }
        guard i < t.count else { return nil }
        var offsetSeconds = 0
        switch t[i] {
        case UInt8(ascii: "Z"):
            break
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard let oh = digits(i + 1, 2) else { return nil }
            let mAt = (i + 3 < t.count && t[i + 3] == UInt8(ascii: ":")) ? i + 4 : i + 3
            let om = digits(mAt, 2) ?? 0
            offsetSeconds = (oh * 3600 + om * 60) * (t[i] == UInt8(ascii: "-") ? -1 : 1)
        default:
            return nil
        }
        // Days from civil (Howard Hinnant's algorithm).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        return Int64(seconds) * 1_000_000 + Int64(micros)
    }
}
