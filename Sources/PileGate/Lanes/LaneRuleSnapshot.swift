import Atomics
import Foundation
import YKC

/// One immutable version of the lane rules, as the login path reads it.
///
/// Swapped whole through a `ManagedAtomic` so a login reads rules with one atomic load — no lock
/// that a `PUT /v1/lanes` could make a pile event loop wait on — and always sees one consistent
/// list, never half of an update.
final class LaneRuleSnapshot: AtomicReference, Sendable {
    let rules: [LaneRule]
    let compiled: [CompiledLaneRule]
    let version: Int
    let updatedAt: Date?

    init(rules: [LaneRule], compiled: [CompiledLaneRule], version: Int, updatedAt: Date?) {
        self.rules = rules
        self.compiled = compiled
        self.version = version
        self.updatedAt = updatedAt
    }

    static let empty = LaneRuleSnapshot(rules: [], compiled: [], version: 0, updatedAt: nil)

    /// First match wins; no match is the base lane "".
    func lane(for login: Login, remoteHost: String) -> String {
        if compiled.isEmpty { return "" }
        var query = LaneQuery(login: login, remoteHost: remoteHost)
        for rule in compiled where rule.matches(&query) { return rule.lane }
        return ""
    }

    var document: LaneRuleDocument {
        LaneRuleDocument(rules: rules, version: version, updatedAt: updatedAt)
    }
}
