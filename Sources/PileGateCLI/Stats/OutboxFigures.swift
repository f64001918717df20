import YKC

/// Depth and oldest age from the outbox's stats section, whatever its exact shape: `depth` or
/// the sum of `pending` (nested per service and type), and `oldestAgeSeconds` or the largest of
/// `oldestPendingAgeSeconds` (per service).
enum OutboxFigures {
    static func of(_ outbox: JSONValue) -> (depth: Int?, oldest: Double?) {
        var depth = outbox["depth"]?.intValue
        if depth == nil, let pending = outbox["pending"] { depth = Int(sum(pending)) }
        var oldest = outbox["oldestAgeSeconds"]?.doubleValue
        if oldest == nil, let o = outbox["oldestPendingAgeSeconds"] { oldest = o.doubleValue ?? maximum(o) }
        return (depth, oldest)
    }

    private static func sum(_ v: JSONValue) -> Double {
        switch v {
        case .number(let n): return n
        case .object(let o): return o.values.reduce(0) { $0 + sum($1) }
        case .array(let a): return a.reduce(0) { $0 + sum($1) }
        default: return 0
        }
    }

    private static func maximum(_ v: JSONValue) -> Double? {
        switch v {
        case .number(let n): return n
        case .object(let o): return o.values.compactMap(maximum).max()
        case .array(let a): return a.compactMap(maximum).max()
        default: return nil
        }
    }
}
