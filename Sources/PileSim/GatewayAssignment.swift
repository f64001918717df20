/// Which of several gateway addresses a simulated pile connects to, so one load run can spread a
/// fleet over the nodes of a cluster (and several worker processes agree on it without talking).
public enum GatewayAssignment: String, Sendable, Hashable, CaseIterable, Codable {
    /// The k-th pile of the run (counted from the run's first pile id) goes to gateway k mod n:
    /// an even spread, the same however the run is split over worker processes.
    case roundRobin = "round-robin"
    /// A pile goes to gateway FNV-1a-64(its 14-digit id) mod n: a fixed gateway per pile id,
    /// whatever the run's first id, like a load balancer hashing on the pile.
    case hash

    /// The index (0..<count) of the gateway for the pile with run index `runIndex` and id `pileID`.
    public func gatewayIndex(runIndex: Int, pileID: UInt64, count: Int) -> Int {
        guard count > 1 else { return 0 }
        switch self {
        case .roundRobin:
            return runIndex % count
        case .hash:
            return Int(Self.fnv1a(pileID) % UInt64(count))
        }
    }

    /// FNV-1a (64-bit) over the id's 14 ASCII decimal digits.
    public static func fnv1a(_ pileID: UInt64) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        var digits = [UInt8](repeating: 0x30, count: 14)
        var v = pileID
        var i = 13
        while i >= 0 {
            digits[i] = 0x30 + UInt8(v % 10)
            v /= 10
            i -= 1
        }
        for byte in digits {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }
}
