/// A `PUT /v1/lanes` (or `LaneRuleBook.replace(with:ifVersion:)`) carried the version it was
/// based on, and the list changed since: refusing it stops two operators from silently undoing
/// each other's edits (read, modify, write back with the version you read).
public struct LaneRuleVersionConflict: Error, Sendable, Hashable, CustomStringConvertible {
    /// The version the caller based its change on.
    public var expected: Int
    /// The version actually stored.
    public var current: Int

    public init(expected: Int, current: Int) {
        self.expected = expected
        self.current = current
    }

    public var description: String {
        "the lane rules are at version \(current), not \(expected): read them again and reapply your change"
    }
}
