import Foundation
import Hummingbird
import NIOCore
import YKC

extension APIAuthenticator {
    /// Largest accepted `POST /v1/tokens` body.
    static let maxTokenRequestBytes = 1 << 16

    /// Token management on the API (`admin:read` to list, `admin:write` to create and revoke —
    /// `admin:write` can therefore mint any scope; hand it out like root):
    /// - `GET /v1/tokens` → `{"tokens":[{name,scopes,lanes,services,commands,createdAt}]}`, never secrets.
    /// - `POST /v1/tokens` `{"name","scopes":[…],"lanes"?,"services"?,"commands"?}` → 201
    ///   `{"token":{…},"secret":"pgt_…"}`; the secret is not shown again. 400 for a bad request,
    ///   409 `token_exists` for a taken name.
    /// - `DELETE /v1/tokens/{name}` → `{"revoked":name}` or 404.
    func installRoutes(_ router: Router<AdminAPI.Context>) {
        router.get("/v1/tokens") { _, _ in
            try AdminAPI.encode(["tokens": self.tokens.list()])
        }
        router.post("/v1/tokens") { request, _ in
            let body = try await request.body.collect(upTo: Self.maxTokenRequestBytes)
            guard let json = try? JSONValue.parse(Data(body.readableBytesView)), let object = json.objectValue else {
                return AdminAPI.error(.badRequest, "invalid_json", "body must be a JSON object {\"name\",\"scopes\":[…]}")
            }
            do {
                let token = try Self.token(from: object)
                let (stored, secret) = try await self.tokens.create(token)
                struct Created: Encodable {
                    var token: APIToken
                    var secret: String
                }
                return try AdminAPI.encode(Created(token: stored, secret: secret), status: .created)
            } catch let e as APITokenError {
                return AdminAPI.error(e.code == "token_exists" ? .conflict : .badRequest, e.code, e.message)
            }
        }
        router.delete("/v1/tokens/:name") { _, context in
            let name = context.parameters.get("name") ?? ""
            guard try await self.tokens.revoke(name: name) else {
                return AdminAPI.error(.notFound, "not_found", "no token named '\(name.prefix(64))'")
            }
            return AdminAPI.json(["revoked": name])
        }
    }

    /// A token from the API's JSON form; every field checked.
    static func token(from o: [String: JSONValue]) throws(APITokenError) -> APIToken {
        guard let name = o["name"]?.stringValue else { throw APITokenError(code: "invalid_name", message: "\"name\" must be a string") }
        func list(_ key: String) throws(APITokenError) -> [String]? {
            guard let v = o[key], v != .null else { return nil }
            guard let array = v.arrayValue else { throw APITokenError(code: "invalid_limit", message: "\"\(key)\" must be an array of strings") }
            var out: [String] = []
            for e in array {
                guard let s = e.stringValue else { throw APITokenError(code: "invalid_limit", message: "\"\(key)\" must be an array of strings") }
                out.append(s)
            }
            return out
        }
        guard let scopeNames = try list("scopes") else {
            throw APITokenError(code: "invalid_scope", message: "\"scopes\" must be an array of scope names")
        }
        let token = APIToken(
            name: name, scopes: try APIScope.parse(scopeNames), lanes: try list("lanes"), services: try list("services"),
            commands: try list("commands"))
        try token.validate()
        return token
    }
}
