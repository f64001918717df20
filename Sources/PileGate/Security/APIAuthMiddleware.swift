import Hummingbird
import NIOCore

/// Applies `APIAccessRule` to every request: 401 with `WWW-Authenticate: Bearer` when a credential
/// is missing or unknown, 403 when it lacks the scope or limit, both counted. On success the
/// principal rides in the context (the WebSocket subscription checks its limits later).
///
/// A refused WebSocket upgrade is answered by Hummingbird with a bare 400 and closed (it cannot
/// carry our status); the same request without `Upgrade` shows the JSON 401/403 reason.
struct APIAuthMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let auth: APIAuthenticator

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let requirement = APIAccessRule.requirement(
            method: request.method, endpoint: context.endpointPath, command: context.parameters.get("command"),
            lane: request.uri.queryParameters.get("lane").map { String($0) })
        guard requirement != .none, auth.enforced else { return try await next(request, context) }
        let principal: APIPrincipal
        switch await auth.principal(authorization: request.headers[.authorization], channel: context.channel) {
        case .failure(let refusal):
            auth.unauthorized.wrappingIncrement(ordering: .relaxed)
            auth.logger.debug("API request unauthorized", metadata: ["path": "\(request.uri.path.prefix(128))", "reason": "\(refusal.message)"])
            var response = AdminAPI.error(.unauthorized, refusal.code, refusal.message)
            response.headers[.wwwAuthenticate] =
                refusal.code == "invalid_token" ? #"Bearer realm="pilegate", error="invalid_token""# : #"Bearer realm="pilegate""#
            return response
        case .success(let p):
            principal = p
        }
        let denial: String? =
            switch requirement {
            case .none: nil
            case .scope(let scope): principal.has(scope) ? nil : "token '\(principal.name)' lacks scope \(scope.rawValue)"
            case .command(let kind, let lane): principal.refusal(command: kind, lane: lane)
            }
        if let denial {
            auth.refuse(denial)
            return AdminAPI.error(.forbidden, "forbidden", denial)
        }
        var context = context
        context.principal = principal
        return try await next(request, context)
    }
}
