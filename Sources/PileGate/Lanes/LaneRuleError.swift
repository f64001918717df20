/// Why a lane rule list was refused: `path` names the rule and key (`rules[2].match.cidr`) so an
/// operator can find the mistake in a list of hundreds of rules without guessing.
public struct LaneRuleError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where in the document: `rules`, `rules[2].lane`, `rules[2].match.cidr`, `rules[0].match.piles[7]`.
    public var path: String
    /// What is wrong there, quoting the offending value.
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    /// `rules[2].match.cidr: invalid CIDR '10.0.0/33': …` — the text the API returns.
    public var description: String { "\(path): \(message)" }
}
