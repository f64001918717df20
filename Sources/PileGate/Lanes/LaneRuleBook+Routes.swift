import Foundation
import Hummingbird
import NIOCore
import YKC

extension LaneRuleBook {
    /// Largest accepted `PUT /v1/lanes` body; larger bodies get 413.
    public static let maxRequestBytes = 1 << 20

    /// `GET /v1/lanes` and `PUT /v1/lanes`, for the admin API to add.
    ///
    /// - `GET` → 200 `{"rules":[…],"version":N,"updatedAt":"…"|null}`.
    /// - `PUT` with `{"rules":[…]}` (optionally `"version":N` to apply only on top of version N)
    ///   → 200 with the stored document; 400 `{"error":"invalid_json"}` for a body that is not
    ///   JSON, 400 `{"error":"invalid_rules","message":"rules[2].match.cidr: …"}` for a bad list,
    ///   409 `{"error":"version_conflict"}` when `version` is stale, 503 `{"error":"cluster_unavailable"}`
    ///   in cluster mode while NATS cannot be reached. Nothing changes on an error.
    public var routes: RouteCollection<AdminAPI.Context> {
        let router = RouteCollection(context: AdminAPI.Context.self)
        router.get("/v1/lanes") { _, _ in
            try AdminAPI.encode(self.document)
        }
        router.put("/v1/lanes") { request, _ in
            let json = try await AdminAPI.jsonBody(request, upTo: Self.maxRequestBytes)
            do {
                let parsed = try LaneRuleDocument.parseRequest(json)
                return try AdminAPI.encode(try await self.replace(with: parsed.rules, ifVersion: parsed.expectedVersion))
            } catch let error as LaneRuleError {
                return AdminAPI.error(.badRequest, "invalid_rules", error.description)
            } catch let error as LaneRuleVersionConflict {
                return AdminAPI.error(.conflict, "version_conflict", error.description)
            } catch let error as LaneRuleSharingUnavailable {
                return AdminAPI.error(.serviceUnavailable, "cluster_unavailable", error.description)
            }
        }
        return router
    }
}
