import Foundation
import Hummingbird
import NIOCore
import YKC

/// The admin API's view of commands waiting for offline piles (docs/API.md, "Queued commands"):
///
/// - `GET /v1/piles/{id}/commands/queued` (`admin:read`): the pile's queued commands in queue
///   order, with their arguments.
/// - `DELETE /v1/piles/{id}/commands/queued/{qid}` (`commands:send`): cancels one that has not
///   been taken for sending: 200 with it, 404 `not_found`, 409 `already_sending`.
///
/// The 202 answer of a command that was queued is built here too.
enum QueuedCommandRoutes {
    static func add(to routes: RouteCollection<AdminAPI.Context>, hub: BackendHub) {
        routes.get("/v1/piles/:id/commands/queued") { _, context in
            let pile = try AdminAPI.pileId(context)
            guard let queued = hub.queuedCommands else { return unavailable() }
            let list = try await queued.store.list(pile: pile)
            var w = JSONWriter()
            w.beginObject()
            w.field("pile", pile.description)
            w.field("count", list.count)
            w.key("commands")
            w.beginArray()
            for c in list { c.writeJSON(into: &w) }
            w.endArray()
            w.endObject()
            return json(.ok, w)
        }
        routes.delete("/v1/piles/:id/commands/queued/:qid") { _, context in
            let pile = try AdminAPI.pileId(context)
            let id = context.parameters.get("qid") ?? ""
            guard let queued = hub.queuedCommands else { return unavailable() }
            switch try await queued.store.cancel(pile: pile, id: id) {
            case .cancelled(let command):
                hub.logger.notice("queued command cancelled", metadata: ["pile": "\(pile)", "id": "\(id)", "command": "\(command.command)"])
                var w = JSONWriter()
                w.beginObject()
                w.field("cancelled", command.id)
                w.key("command")
                command.writeJSON(into: &w)
                w.endObject()
                return json(.ok, w)
            case .notFound:
                return AdminAPI.error(.notFound, "not_found", "pile \(pile) has no queued command '\(id.prefix(64))'")
            case .busy:
                return AdminAPI.error(
                    .conflict, "already_sending",
                    "queued command '\(id.prefix(64))' was already taken for sending to pile \(pile); its command_result event reports it")
            }
        }
    }

    /// 202 `{"ok":true,"id","status":"queued","pile","command","queuedAt","expiresAt"}`: the
    /// pile was offline and the command waits for it.
    static func accepted(_ command: QueuedCommand) -> Response {
        var w = JSONWriter()
        w.beginObject()
        w.field("ok", true)
        w.field("id", command.id)
        w.field("status", "queued")
        w.field("pile", command.pile)
        w.field("command", command.command)
        w.key("queuedAt")
        QueuedCommand.timestamp(command.queuedAt, into: &w)
        w.key("expiresAt")
        QueuedCommand.timestamp(command.expiresAt, into: &w)
        w.endObject()
        return json(.accepted, w)
    }

    private static func json(_ status: HTTPResponse.Status, _ w: JSONWriter) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: w.buffer))
    }

    private static func unavailable() -> Response {
        AdminAPI.error(.serviceUnavailable, "unavailable", "the queued-command store is not open (see the gateway's log)")
    }
}
