import YKC

/// One lane rule: sessions whose login matches `match` go to `lane`.
///
/// Rules are evaluated in list order at login and the first match wins; a session that matches
/// no rule is in the base lane (""). The JSON form is `{"lane":"gray","match":{…}}` (see
/// `LaneMatch` for the keys). A value can be built in code, but nothing is accepted until
/// `LaneRuleBook.validate(_:)` (run by `replace`) has checked it.
public struct LaneRule: Sendable, Hashable, Encodable {
    /// The lane tag, `[A-Za-z0-9_.-]{1,64}`. Never "" — the base lane is where unmatched sessions
    /// already go, so a rule targeting it could only shadow later rules by accident.
    public var lane: String
    /// What the session must satisfy; every key present must hold, an empty match matches all.
    public var match: LaneMatch

    public init(lane: String, match: LaneMatch = LaneMatch()) {
        self.lane = lane
        self.match = match
    }

    /// Parses `rules[index]` of a document; type errors and unknown keys name the rule and key.
    /// Value checks (lane tag, CIDR, glob, ranges) are done by validation, so they apply to rules
    /// built in code too.
    public init(json: JSONValue, index: Int) throws(LaneRuleError) {
        let path = "rules[\(index)]"
        guard let object = json.objectValue else {
            throw LaneRuleError(path: path, message: "expected an object {\"lane\":…,\"match\":{…}}")
        }
        for key in object.keys.sorted() where key != "lane" && key != "match" {
            throw LaneRuleError(path: "\(path).\(key)", message: "unknown key (a rule has 'lane' and 'match')")
        }
        guard let laneValue = object["lane"] else {
            throw LaneRuleError(path: "\(path).lane", message: "missing")
        }
        guard let lane = laneValue.stringValue else {
            throw LaneRuleError(path: "\(path).lane", message: "expected a string, got \(laneValue)")
        }
        guard let matchValue = object["match"] else {
            // Required so a catch-all is always written on purpose, as "match": {}.
            throw LaneRuleError(path: "\(path).match", message: "missing (use {} to match every session)")
        }
        self.lane = lane
        self.match = try LaneMatch(json: matchValue, path: "\(path).match")
    }

    /// The JSON form, as stored and as `GET /v1/lanes` shows it.
    public var json: JSONValue {
        .object(["lane": .string(lane), "match": match.json])
    }

    public func encode(to encoder: any Encoder) throws {
        try json.encode(to: encoder)
    }
}
