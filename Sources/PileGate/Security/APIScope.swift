import Foundation

/// What an API credential may do. Every route of the API maps to exactly one scope
/// (`APIAccessRule`); `/healthz`, `/readyz` and `/metrics` need none.
public enum APIScope: String, CaseIterable, Codable, Sendable, Comparable {
    /// Open `/v1/events` and subscribe (optionally limited to services and lanes).
    case eventsSubscribe = "events:subscribe"
    /// Send commands to piles: `POST /v1/piles/{id}/commands/{command}` and WebSocket `command`
    /// messages (optionally limited to command kinds and lanes).
    case commandsSend = "commands:send"
    /// Every other GET: stats, piles, lanes, hub, outbox, tokens (never secrets), the web view.
    case adminRead = "admin:read"
    /// Every other PUT, POST and DELETE: provisioning, kicks, lane rules, outbox replay, tokens.
    case adminWrite = "admin:write"

    public static func < (a: APIScope, b: APIScope) -> Bool { a.rawValue < b.rawValue }

    /// Parses `a,b,c` (or a JSON array's strings); an unknown name is an error naming it.
    public static func parse(_ names: [String]) throws(APITokenError) -> [APIScope] {
        var out: Set<APIScope> = []
        for name in names {
            let trimmed = name.trimmingCharacters(in: .whitespaces)
            guard let scope = APIScope(rawValue: trimmed) else {
                throw APITokenError(
                    code: "invalid_scope",
                    message: "unknown scope '\(trimmed.prefix(64))'; one of \(APIScope.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            out.insert(scope)
        }
        guard !out.isEmpty else { throw APITokenError(code: "invalid_scope", message: "at least one scope is required") }
        return out.sorted()
    }
}
