import Foundation
import YKC

/// The lane rule list as `GET /v1/lanes` shows it and `PUT /v1/lanes` takes it:
/// `{"rules":[…],"version":N,"updatedAt":"…"}`.
///
/// `version` counts accepted replacements (0 = never set) and `updatedAt` is when the current
/// list was stored (null when never set). On a PUT both are optional: `updatedAt` is ignored so a
/// GET result can be edited and sent back as is, and `version`, when present, makes the PUT apply
/// only if the list is still at that version (409 otherwise).
public struct LaneRuleDocument: Sendable, Hashable, Encodable {
    public var rules: [LaneRule]
    public var version: Int
    public var updatedAt: Date?

    public init(rules: [LaneRule], version: Int, updatedAt: Date?) {
        self.rules = rules
        self.version = version
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case rules, version, updatedAt
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(rules, forKey: .rules)
        try c.encode(version, forKey: .version)
        // Explicit null, so clients can tell "never set" without a missing-key special case.
        try c.encode(updatedAt, forKey: .updatedAt)
    }

    /// A parsed PUT body: the new rules, and the version they were based on if the client sent it.
    public struct Request: Sendable, Hashable {
        public var rules: [LaneRule]
        public var expectedVersion: Int?
    }

    /// Parses `{"rules":[…]}` (plus optional `version` and ignored `updatedAt`). Types and keys
    /// only; values are checked by `LaneRuleBook.validate(_:)`.
    public static func parseRequest(_ json: JSONValue) throws(LaneRuleError) -> Request {
        guard let object = json.objectValue else {
            throw LaneRuleError(path: "$", message: "expected an object {\"rules\":[…]}")
        }
        for key in object.keys.sorted() where !["rules", "version", "updatedAt"].contains(key) {
            throw LaneRuleError(path: key, message: "unknown key (expected 'rules', optionally 'version')")
        }
        guard let rulesValue = object["rules"] else { throw LaneRuleError(path: "rules", message: "missing") }
        guard let list = rulesValue.arrayValue else {
            throw LaneRuleError(path: "rules", message: "expected a list of rules")
        }
        guard list.count <= LaneRuleBook.maxRules else {
            throw LaneRuleError(path: "rules", message: "\(list.count) rules exceed the limit of \(LaneRuleBook.maxRules)")
        }
        var rules: [LaneRule] = []
        rules.reserveCapacity(list.count)
        for (i, item) in list.enumerated() { rules.append(try LaneRule(json: item, index: i)) }
        var expected: Int?
        if let v = object["version"], v != .null {
            guard let n = v.intValue, n >= 0 else {
                throw LaneRuleError(path: "version", message: "expected a non-negative integer, got \(v)")
            }
            expected = n
        }
        return Request(rules: rules, expectedVersion: expected)
    }
}
