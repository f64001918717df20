import Foundation
import Hummingbird
import NIOCore
import YKC

/// The outbox's routes on the API (docs/API.md, "Outbox"), handed over as a Hummingbird
/// `RouteCollection`:
///
/// - `GET /v1/outbox`: pending counts per service and type, oldest pending age, counters.
/// - `GET /v1/outbox/events?service=&after=&limit=`: a page of stored events.
/// - `DELETE /v1/outbox/services/{service}`: forget a durable service (409 while connected).
/// - `POST /v1/outbox/replay` `{"service","from","to"}`: deliver a range again.
enum OutboxRoutes {
    static func collection(outbox: Outbox) -> RouteCollection<AdminAPI.Context> {
        let routes = RouteCollection(context: AdminAPI.Context.self)
        routes.get("/v1/outbox") { _, _ in
            return try AdminAPI.encode(try await outbox.summary())
        }
        routes.get("/v1/outbox/events") { request, _ in
            let q = request.uri.queryParameters
            guard let after = Int64(q.get("after") ?? "0"), after >= 0 else {
                return AdminAPI.error(.badRequest, "invalid_after", "after must be a sequence number >= 0")
            }
            guard let limit = Int(q.get("limit") ?? "100"), (1...10_000).contains(limit) else {
                return AdminAPI.error(.badRequest, "invalid_limit", "limit must be an integer 1...10000")
            }
            return try AdminAPI.encode(["events": try await outbox.events(service: q.get("service"), after: after, limit: limit)])
        }
        routes.delete("/v1/outbox/services/:service") { _, context in
            let service = context.parameters.get("service") ?? ""
            switch try await outbox.forget(service: service) {
            case .forgotten:
                return AdminAPI.json(["forgotten": service])
            case .unknown:
                return AdminAPI.error(.notFound, "not_found", "the outbox keeps no events for a service named '\(service)'")
            case .connected(let n):
                return AdminAPI.error(
                    .conflict, "service_connected",
                    "service '\(service)' has \(n) instance(s) connected; it can be forgotten once they have disconnected")
            }
        }
        routes.post("/v1/outbox/replay") { request, _ in
            let body = try await request.body.collect(upTo: 1 << 16)
            guard let json = try? JSONValue.parse(String(buffer: body)), let service = json["service"]?.stringValue, !service.isEmpty
            else { return AdminAPI.error(.badRequest, "invalid_replay", "body must be {\"service\": name, \"from\": seq, \"to\": seq}") }
            let from = Int64(json["from"]?.intValue ?? 0)
            let to = Int64(json["to"]?.intValue ?? Int(Int64.max))
            guard from <= to else { return AdminAPI.error(.badRequest, "invalid_replay", "from must not exceed to") }
            let n = try await outbox.replay(service: service, from: from, to: to)
            return AdminAPI.json(["service": service, "replayed": String(n)])
        }
        return routes
    }
}
