import Foundation
import Hummingbird
import NIOCore
import YKC

extension PileLimitStore {
    /// Largest accepted `PUT /v1/piles/{id}/limits` body; larger bodies get 413.
    public static let maxRequestBytes = 4_096

    /// Installs the per-pile limit routes on the admin API (docs/API.md, "Per-pile limits").
    ///
    /// - `PUT /v1/piles/{id}/limits` with any subset of the four limits → 201 (new) or 200
    ///   (replaced) with the override; 400 `invalid_json` or `invalid_limits` naming the problem.
    /// - `GET /v1/piles/{id}/limits` → 200 with the override or 404 `no_limits`.
    /// - `DELETE /v1/piles/{id}/limits` → 200 `{"removed":id}` or 404 `no_limits`.
    static func installRoutes(_ router: Router<AdminAPI.Context>, gateway: Gateway) {
        let store = gateway.context.limits
        let logger = gateway.context.logger
        router.put("/v1/piles/:id/limits") { request, context in
            let id = try AdminAPI.pileId(context)
            let json = try await AdminAPI.jsonBody(request, upTo: Self.maxRequestBytes)
            let limits: Limits
            do {
                limits = try Limits(json: json)
            } catch let error as PileLimitError {
                return AdminAPI.error(.badRequest, "invalid_limits", error.description)
            }
            let replaced = try await store.set(pile: id, limits: limits)
            logger.notice("pile limits set", metadata: ["pile": "\(id)", "limits": "\(limits)"])
            return try AdminAPI.encode(limits, status: replaced ? .ok : .created)
        }
        router.get("/v1/piles/:id/limits") { _, context in
            let id = try AdminAPI.pileId(context)
            guard let limits = store.limits(for: id) else {
                return AdminAPI.error(.notFound, "no_limits", "pile \(id) has no limit override")
            }
            return try AdminAPI.encode(limits)
        }
        router.delete("/v1/piles/:id/limits") { _, context in
            let id = try AdminAPI.pileId(context)
            guard try await store.remove(pile: id) else {
                return AdminAPI.error(.notFound, "no_limits", "pile \(id) has no limit override")
            }
            logger.notice("pile limits removed", metadata: ["pile": "\(id)"])
            return AdminAPI.json(["removed": id.description])
        }
    }
}
