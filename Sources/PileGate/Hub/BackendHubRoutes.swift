import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import YKC

/// The hub's routes on the API, handed over as a Hummingbird `RouteCollection` that the API
/// adds at start:
///
/// - `GET /v1/events`: the backends' WebSocket (docs/BACKEND-PROTOCOL.md); a plain GET without
///   an upgrade gets 426 saying so.
/// - `POST /v1/piles/{id}/commands/{command}`: a command over HTTP (`BackendCommands`), the
///   pile's reply as `{"ok":true,"reply":{…}}` or `{"ok":false,"error","message"}` with the
///   status `BackendCommands.httpStatus(for:)` gives; with `?deliverWithin=N` and the pile
///   offline, 202 and the queued command.
/// - `GET /v1/hub`: instances, lane traffic, undeliverable events and pending replies.
/// - `GET /v1/piles/{id}/commands/queued`, `DELETE …/queued/{qid}`: commands waiting for an
///   offline pile (`QueuedCommandRoutes`).
enum BackendHubRoutes {
    /// Largest accepted command body.
    static let maxCommandBytes = 1 << 20

    static func collection(hub: BackendHub) -> RouteCollection<AdminAPI.Context> {
        let routes = RouteCollection(context: AdminAPI.Context.self)
        routes.ws("/v1/events") { request, _ in
            // Reached without an upgrade only by a plain HTTP GET: say what the path wants
            // (a WebSocket upgrade carries `Upgrade: websocket`), not an empty 200.
            guard request.headers[.upgrade]?.lowercased() == "websocket" else {
                throw HTTPError(
                    .upgradeRequired, headers: [.upgrade: "websocket"],
                    message: "GET /v1/events is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket); see BACKEND-PROTOCOL.md")
            }
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            await BackendConnection(
                hub: hub, outbound: outbound, channel: context.requestContext.channel, principal: context.requestContext.principal
            ).run(inbound: inbound)
        }
        routes.post("/v1/piles/:id/commands/:command") { request, context in
            try await command(request: request, context: context, hub: hub)
        }
        routes.get("/v1/hub") { _, _ in
            try AdminAPI.encode(hub.statsDocument())
        }
        QueuedCommandRoutes.add(to: routes, hub: hub)
        return routes
    }

    private static func command(request: Request, context: AdminAPI.Context, hub: BackendHub) async throws -> Response {
        let pile = context.parameters.get("id") ?? ""
        let command = context.parameters.get("command") ?? ""
        let body = try await request.body.collect(upTo: maxCommandBytes)
        var args: JSONValue?
        if body.readableBytes > 0 {
            do { args = try JSONValue.parse(String(buffer: body)) } catch {
                return failure(.badRequest, "invalid_args", "body is not valid JSON: \(error.description)")
            }
        }
        let timeout = request.uri.queryParameters.get("timeout").map { JSONValue.string($0) }
        let deliverWithin = request.uri.queryParameters.get("deliverWithin").map { JSONValue.string($0) }
        let lane = request.uri.queryParameters.get("lane") ?? ""
        switch await hub.runCommand(pile: pile, command: command, args: args, senderLane: lane, timeout: timeout, deliverWithin: deliverWithin) {
        case .queued(let queued):
            return QueuedCommandRoutes.accepted(queued)
        case .success(let reply):
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: #"{"ok":true,"reply":"# + reply + "}")))
        case .failure(let code, let message):
            return failure(BackendCommands.httpStatus(for: code), code, message)
        }
    }

    /// `{"ok":false,"error":code,"message":…}`: a command's failure, as the WebSocket's result says it.
    private static func failure(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> Response {
        var w = JSONWriter()
        w.beginObject()
        w.field("ok", false)
        APIErrorBody(code, message).writeMembers(into: &w)
        w.endObject()
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: w.buffer))
    }
}
