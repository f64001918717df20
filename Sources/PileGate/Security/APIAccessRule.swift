import Hummingbird

/// The scope table: what each API route requires. Routes are matched by the router's endpoint
/// path (the pattern, e.g. `/v1/piles/{id}/commands/{command}`), so percent-encoding or extra
/// slashes in a request cannot slip past it; a path no route matches needs the method's default
/// scope too (a 404 is not handed to strangers).
///
/// | route | requirement |
/// |---|---|
/// | `GET /healthz`, `/readyz`, `/metrics` | none (probes and scrapers) |
/// | `GET /v1/events` (WebSocket) | `events:subscribe` at the upgrade; services and lanes at `subscribe`; `commands:send` per `command` message |
/// | `POST /v1/piles/{id}/commands/{command}` | `commands:send`, the command kind and `?lane=` within the token's limits |
/// | `DELETE /v1/piles/{id}/commands/queued/{qid}` | `commands:send` (cancelling a queued command) |
/// | any other `GET`/`HEAD` | `admin:read` |
/// | any other method | `admin:write` |
public enum APIAccessRule {
    public enum Requirement: Equatable, Sendable {
        case none
        case scope(APIScope)
        /// `commands:send` for this command kind, sent for this lane.
        case command(kind: String, lane: String)
    }

    public static let publicEndpoints: Set<String> = ["/healthz", "/readyz", "/metrics"]
    static let commandEndpoint = "/v1/piles/{id}/commands/{command}"
    static let queuedCommandEndpoint = "/v1/piles/{id}/commands/queued/{qid}"

    public static func requirement(method: HTTPRequest.Method, endpoint: String?, command: String?, lane: String?) -> Requirement {
        if let endpoint {
            if publicEndpoints.contains(endpoint) && (method == .get || method == .head) { return .none }
            if endpoint == "/v1/events" && method == .get { return .scope(.eventsSubscribe) }
            if endpoint == commandEndpoint && method == .post { return .command(kind: command ?? "", lane: lane ?? "") }
            if endpoint == queuedCommandEndpoint && method == .delete { return .scope(.commandsSend) }
        }
        return method == .get || method == .head ? .scope(.adminRead) : .scope(.adminWrite)
    }
}
