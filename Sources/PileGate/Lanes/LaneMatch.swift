import YKC

/// The conditions of a lane rule, all of which must hold (an empty match matches every session).
///
/// JSON keys (every key optional, unknown keys are refused so a typo never widens a rule):
/// - `piles`: list of pile id strings (up to 14 digits, or 14 hex digits; shown as 14 digits).
///   An empty list matches no pile.
/// - `pilePrefix`: 1–14 decimal digits the 14-digit pile id starts with (a station or batch).
/// - `percent`: integer 0–100; holds when `FNV-1a-32(pile id) % 100 < percent`, where the hash
///   runs over the 14 ASCII characters of the id as printed ("32010600019236"; offset basis
///   2166136261, prime 16777619). Stable across processes, restarts and gateway nodes, so a pile
///   stays in or out of a percentage rollout wherever it logs in, and raising N only adds piles.
/// - `pileType`: "ac" / "dc" (or the raw number).
/// - `protocolVersion`: integer 0–255 as sent in the login, e.g. 15 (V1.5) or 16 (V1.6).
/// - `firmware`: glob over the firmware version (trailing NULs and spaces ignored), `*` = any run,
///   `?` = one character, everything else literal and case-sensitive; `[`, `]`, `\` are refused
///   because they are not special here and would surprise anyone used to shell globs.
/// - `carrier`: "china_mobile" / "china_telecom" / "china_unicom" / "other", or a number 0–255.
/// - `networkType`: "sim" / "lan" / "wan" / "other", or a number 0–255.
/// - `cidr`: a CIDR string ("10.0.0.0/8", "::1/128") or a list of them (any may hold) for the
///   source address; an IPv4 block also matches the IPv4-mapped IPv6 form of the address. A bare
///   address means that one host.
public struct LaneMatch: Sendable, Hashable {
    public var piles: [PileID]?
    public var pilePrefix: String?
    public var percent: Int?
    public var pileType: PileType?
    public var protocolVersion: Int?
    public var firmware: String?
    public var carrier: Carrier?
    public var networkType: NetworkType?
    public var cidr: [String]?

    /// The JSON keys, in the order they are checked in error messages and shown.
    public static let keys = [
        "piles", "pilePrefix", "percent", "pileType", "protocolVersion", "firmware", "carrier", "networkType", "cidr",
    ]

    public init(
        piles: [PileID]? = nil, pilePrefix: String? = nil, percent: Int? = nil, pileType: PileType? = nil,
        protocolVersion: Int? = nil, firmware: String? = nil, carrier: Carrier? = nil, networkType: NetworkType? = nil,
        cidr: [String]? = nil
    ) {
        self.piles = piles
        self.pilePrefix = pilePrefix
        self.percent = percent
        self.pileType = pileType
        self.protocolVersion = protocolVersion
        self.firmware = firmware
        self.carrier = carrier
        self.networkType = networkType
        self.cidr = cidr
    }

    /// True when no key is set: the rule takes every session that reaches it.
    public var isEmpty: Bool { self == LaneMatch() }

    /// Parses a `match` object; `path` is where it sits (`rules[2].match`) for error messages.
    public init(json: JSONValue, path: String) throws(LaneRuleError) {
        guard let object = json.objectValue else {
            throw LaneRuleError(path: path, message: "expected an object, got \(json)")
        }
        for key in object.keys.sorted() where !Self.keys.contains(key) {
            throw LaneRuleError(
                path: "\(path).\(key)", message: "unknown match key (known: \(Self.keys.joined(separator: ", ")))")
        }
        self.init()
        if let v = object["piles"] {
            guard let list = v.arrayValue else {
                throw LaneRuleError(path: "\(path).piles", message: "expected a list of pile id strings, got \(v)")
            }
            var ids: [PileID] = []
            ids.reserveCapacity(list.count)
            for (i, item) in list.enumerated() {
                guard let text = item.stringValue, let id = PileID(input: text) else {
                    throw LaneRuleError(
                        path: "\(path).piles[\(i)]",
                        message: "invalid pile id \(item): expected a string of \(PileID.inputRule)")
                }
                ids.append(id)
            }
            piles = ids
        }
        if let v = object["pilePrefix"] {
            guard let s = v.stringValue else {
                throw LaneRuleError(path: "\(path).pilePrefix", message: "expected a string of digits, got \(v)")
            }
            pilePrefix = s
        }
        if let v = object["percent"] {
            guard let n = v.intValue else {
                throw LaneRuleError(path: "\(path).percent", message: "expected an integer 0...100, got \(v)")
            }
            percent = n
        }
        if let v = object["pileType"] {
            pileType = try Self.enumValue(v, path: "\(path).pileType", as: PileType.self, names: ["ac", "dc"])
        }
        if let v = object["protocolVersion"] {
            guard let n = v.intValue else {
                throw LaneRuleError(path: "\(path).protocolVersion", message: "expected an integer such as 15 or 16, got \(v)")
            }
            protocolVersion = n
        }
        if let v = object["firmware"] {
            guard let s = v.stringValue else {
                throw LaneRuleError(path: "\(path).firmware", message: "expected a glob string, got \(v)")
            }
            firmware = s
        }
        if let v = object["carrier"] {
            carrier = try Self.enumValue(
                v, path: "\(path).carrier", as: Carrier.self,
                names: ["china_mobile", "china_telecom", "china_unicom", "other"])
        }
        if let v = object["networkType"] {
            networkType = try Self.enumValue(
                v, path: "\(path).networkType", as: NetworkType.self, names: ["sim", "lan", "wan", "other"])
        }
        if let v = object["cidr"] {
            if let s = v.stringValue {
                cidr = [s]
            } else if let list = v.arrayValue {
                var blocks: [String] = []
                for (i, item) in list.enumerated() {
                    guard let s = item.stringValue else {
                        throw LaneRuleError(path: "\(path).cidr[\(i)]", message: "expected a CIDR string, got \(item)")
                    }
                    blocks.append(s)
                }
                cidr = blocks
            } else {
                throw LaneRuleError(path: "\(path).cidr", message: "expected a CIDR string or a list of them, got \(v)")
            }
        }
    }

    /// The JSON form: only the keys that are set; enums by name (number when unnamed); a single
    /// CIDR as a string, several as a list.
    public var json: JSONValue {
        var o: [String: JSONValue] = [:]
        if let piles { o["piles"] = .array(piles.map { .string($0.description) }) }
        if let pilePrefix { o["pilePrefix"] = .string(pilePrefix) }
        if let percent { o["percent"] = .number(Double(percent)) }
        if let pileType { o["pileType"] = Self.enumJSON(pileType) }
        if let protocolVersion { o["protocolVersion"] = .number(Double(protocolVersion)) }
        if let firmware { o["firmware"] = .string(firmware) }
        if let carrier { o["carrier"] = Self.enumJSON(carrier) }
        if let networkType { o["networkType"] = Self.enumJSON(networkType) }
        if let cidr { o["cidr"] = cidr.count == 1 ? .string(cidr[0]) : .array(cidr.map { .string($0) }) }
        return .object(o)
    }

    private static func enumValue<E: YKCEnum>(_ v: JSONValue, path: String, as: E.Type, names: [String])
        throws(LaneRuleError) -> E
    {
        if let s = v.stringValue {
            guard let e = E(name: s) else {
                throw LaneRuleError(
                    path: path, message: "unknown value '\(s)' (expected \(names.joined(separator: ", ")) or a number 0...255)")
            }
            return e
        }
        if let n = v.intValue, (0...255).contains(n) { return E(rawValue: UInt8(n)) }
        throw LaneRuleError(path: path, message: "expected one of \(names.joined(separator: ", ")) or a number 0...255, got \(v)")
    }

    private static func enumJSON<E: YKCEnum>(_ e: E) -> JSONValue {
        if let name = e.name { return .string(name) }
        return .number(Double(e.rawValue))
    }
}
