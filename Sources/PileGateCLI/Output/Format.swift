import Foundation

/// Number formatting shared by the CLI's screens.
enum Format {
    /// A rate: "0", "0.25", "3.5", "120", "1.2k".
    static func rate(_ v: Double) -> String {
        if v.isNaN || v.isInfinite { return "-" }
        let a = abs(v)
        if a == 0 { return "0" }
        if a < 0.01 { return "<0.01" }
        if a < 10 { return trimmed(String(format: "%.2f", v)) }
        if a < 1000 { return trimmed(String(format: "%.1f", v)) }
        if a < 1_000_000 { return trimmed(String(format: "%.1f", v / 1000)) + "k" }
        return trimmed(String(format: "%.2f", v / 1_000_000)) + "M"
    }

    static func count(_ n: Int) -> String { String(n) }

    static func bytes(_ n: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = n
        var i = 0
        while abs(v) >= 1024 && i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return i == 0 ? "\(Int(v)) B" : String(format: "%.1f %@", v, units[i])
    }

    /// Seconds as "850 µs", "12 ms", "3.4 s", "2m05s", "1h02m", "3d04h".
    static func duration(_ s: Double) -> String {
        if s.isNaN || s.isInfinite { return "-" }
        if s < 0.001 { return "\(Int((s * 1_000_000).rounded())) µs" }
        if s < 1 { return trimmed(String(format: "%.1f", s * 1000)) + " ms" }
        if s < 60 { return trimmed(String(format: "%.1f", s)) + " s" }
        let t = Int(s)
        if t < 3600 { return String(format: "%dm%02ds", t / 60, t % 60) }
        if t < 86400 { return String(format: "%dh%02dm", t / 3600, (t % 3600) / 60) }
        return String(format: "%dd%02dh", t / 86400, (t % 86400) / 3600)
    }

    private static func trimmed(_ s: String) -> String {
        guard s.contains(".") else { return s }
        var t = s
        while t.hasSuffix("0") { t.removeLast() }
        if t.hasSuffix(".") { t.removeLast() }
        return t
    }

    /// The lane's display name: "base" for the empty tag.
    static func lane(_ tag: String) -> String { tag.isEmpty ? "base" : tag }
}
