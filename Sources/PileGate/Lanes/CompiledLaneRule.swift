import YKC

/// A validated lane rule in the form the login path evaluates: sets and integers instead of
/// strings, so deciding a lane costs a few comparisons and no allocation in the common case.
///
/// Building one is the validation: every check that can refuse a rule lives in `init`, so a
/// rule can never be stored or take effect without having been compiled.
struct CompiledLaneRule: Sendable {
    let lane: String
    let piles: Set<PileID>?
    /// `pilePrefix` as the leading nibbles of `PileID.raw`: `raw >> prefixShift == prefixValue`.
    let prefixValue: UInt64
    let prefixShift: UInt64
    let hasPrefix: Bool
    let percent: UInt32?
    let pileType: UInt8?
    let protocolVersion: UInt8?
    let firmware: LaneFirmwarePattern?
    let carrier: UInt8?
    let networkType: UInt8?
    let cidr: [LaneAddressRange]?

    static let maxPilesPerRule = 50_000

    init(_ rule: LaneRule, index: Int) throws(LaneRuleError) {
        let path = "rules[\(index)]"
        try Self.checkLane(rule.lane, path: "\(path).lane")
        lane = rule.lane
        let m = rule.match
        let mp = "\(path).match"
        if let list = m.piles {
            guard list.count <= Self.maxPilesPerRule else {
                throw LaneRuleError(
                    path: "\(mp).piles",
                    message: "\(list.count) piles exceed the limit of \(Self.maxPilesPerRule) per rule (use pilePrefix or percent)")
            }
            piles = Set(list)
        } else {
            piles = nil
        }
        if let prefix = m.pilePrefix {
            let n = prefix.utf8.count
            guard (1...14).contains(n), prefix.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let value = UInt64(prefix, radix: 16)
            else {
                throw LaneRuleError(path: "\(mp).pilePrefix", message: "invalid prefix '\(prefix)': expected 1 to 14 decimal digits")
            }
            // Decimal digits are the BCD nibbles of the id, so the prefix compares as the top nibbles.
            prefixValue = value
            prefixShift = UInt64(4 * (14 - n))
            hasPrefix = true
        } else {
            prefixValue = 0
            prefixShift = 0
            hasPrefix = false
        }
        if let p = m.percent {
            guard (0...100).contains(p) else {
                throw LaneRuleError(path: "\(mp).percent", message: "\(p) is out of range 0...100")
            }
            percent = UInt32(p)
        } else {
            percent = nil
        }
        pileType = m.pileType?.rawValue
        if let v = m.protocolVersion {
            guard (0...255).contains(v) else {
                throw LaneRuleError(path: "\(mp).protocolVersion", message: "\(v) is out of range 0...255 (e.g. 15 or 16)")
            }
            protocolVersion = UInt8(v)
        } else {
            protocolVersion = nil
        }
        if let f = m.firmware {
            do {
                firmware = try LaneFirmwarePattern(parsing: f)
            } catch {
                switch error {
                case .invalid(let why): throw LaneRuleError(path: "\(mp).firmware", message: "invalid glob '\(f)': \(why)")
                }
            }
        } else {
            firmware = nil
        }
        carrier = m.carrier?.rawValue
        networkType = m.networkType?.rawValue
        if let blocks = m.cidr {
            guard !blocks.isEmpty else {
                throw LaneRuleError(path: "\(mp).cidr", message: "empty list (omit the key to allow any address)")
            }
            var ranges: [LaneAddressRange] = []
            for (i, text) in blocks.enumerated() {
                let p = blocks.count == 1 ? "\(mp).cidr" : "\(mp).cidr[\(i)]"
                do {
                    ranges.append(try LaneAddressRange(parsing: text))
                } catch {
                    switch error {
                    case .invalid(let why): throw LaneRuleError(path: p, message: "invalid CIDR '\(text)': \(why)")
                    }
                }
            }
            cidr = ranges
        } else {
            cidr = nil
        }
    }

    /// Lane tags travel in events, metrics labels and backend subscriptions, so they are kept to
    /// a small, label-safe alphabet.
    static func checkLane(_ lane: String, path: String) throws(LaneRuleError) {
        if lane.isEmpty {
            throw LaneRuleError(
                path: path,
                message: "the base lane \"\" cannot be a rule target (sessions that match no rule are already in the base lane)")
        }
        guard isValidLane(lane) else {
            throw LaneRuleError(path: path, message: "invalid lane '\(lane)': expected 1 to 64 characters of A-Z a-z 0-9 _ . -")
        }
    }

    static func isValidLane(_ lane: String) -> Bool {
        let u = lane.utf8
        guard (1...64).contains(u.count) else { return false }
        return u.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2E
                || c == 0x2D
        }
    }

    /// Whether the session matches; `query` caches the hash and the parsed address across rules.
    func matches(_ query: inout LaneQuery) -> Bool {
        let login = query.login
        if let pileType, login.pileType.rawValue != pileType { return false }
        if let protocolVersion, login.protocolVersion != protocolVersion { return false }
        if let carrier, login.carrier.rawValue != carrier { return false }
        if let networkType, login.networkType.rawValue != networkType { return false }
        if hasPrefix, login.pileId.raw >> prefixShift != prefixValue { return false }
        if let piles, !piles.contains(login.pileId) { return false }
        if let percent, query.percentBucket >= percent { return false }
        if let firmware, !firmware.matches(login.firmwareVersion) { return false }
        if let cidr {
            guard let address = query.address, cidr.contains(where: { $0.contains(address) }) else { return false }
        }
        return true
    }

    /// FNV-1a (32-bit) over the 14 ASCII characters of the pile id as printed, computed from the
    /// nibbles without building the string. Pinned here, not `Hasher`, because `Hasher` is seeded
    /// per process and a percentage rollout must not reshuffle piles on every restart.
    static func percentBucket(_ id: PileID) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for i in stride(from: 13, through: 0, by: -1) {
            let nibble = UInt8(truncatingIfNeeded: (id.raw >> UInt64(4 * i)) & 0xF)
            let ascii = nibble < 10 ? 0x30 + nibble : 0x41 + nibble - 10
            hash ^= UInt32(ascii)
            hash = hash &* 16_777_619
        }
        return hash % 100
    }
}
