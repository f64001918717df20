import Atomics
import Foundation
import HummingbirdWebSocket
import NIOConcurrencyHelpers
import NIOCore
import YKC

/// One backend WebSocket: parses its JSON messages (subscribe, ack, reply, command, drain),
/// writes events as they become ready, and answers every malformed message with an error
/// message naming the problem — never closing the socket or the gateway over it.
struct BackendConnection: Sendable {
    let hub: BackendHub
    let outbound: WebSocketOutboundWriter
    /// The socket's channel, where events are written directly (see `BackendInstance.attach`).
    let channel: any Channel
    /// The credential the socket was opened with (checked at upgrade for `events:subscribe`);
    /// its service and lane limits apply at `subscribe`, its `commands:send` per command. Nil
    /// when the API runs without authentication.
    let principal: APIPrincipal?
    private let instanceBox = NIOLockedValueBox<BackendInstance?>(nil)
    /// Commands of this socket still running (bounded by `maxCommandsPerSocket`).
    private let running = ManagedAtomic(0)

    init(hub: BackendHub, outbound: WebSocketOutboundWriter, channel: any Channel, principal: APIPrincipal? = nil) {
        self.hub = hub
        self.outbound = outbound
        self.channel = channel
        self.principal = principal
    }

    func run(inbound: WebSocketInboundStream) async {
        await withTaskGroup(of: Void.self) { group in
            do {
                // Frames, assembled here rather than by `inbound.messages(maxSize:)`, which closes
                // the socket on an oversized message: that one gets an error and is dropped.
                var assembler = BackendMessageAssembler(limit: hub.config.maxMessageBytes)
                for try await frame in inbound {
                    let kind: BackendMessageAssembler.Kind =
                        switch frame.opcode {
                        case .text: .text
                        case .binary: .binary
                        case .continuation: .continuation
                        }
                    var output = assembler.receive(kind, frame.data, fin: frame.fin)
                    while let message = output {
                        switch message {
                        case .text(let text):
                            if let writer = await handle(text) { group.addTask { await writer() } }
                        case .binary:
                            await send(error: "unsupported", "binary messages are not supported; send JSON text")
                        case .tooLarge(let bytes):
                            await send(
                                error: "message_too_large",
                                "a message of \(bytes) bytes exceeds the limit of \(assembler.limit) bytes (hubMaxMessageBytes); it was dropped")
                        case .outOfOrder:
                            await send(
                                error: "malformed_message",
                                "a continuation frame without a message, or a new message before the last one's final frame (that one was dropped)")
                        }
                        output = assembler.next()
                    }
                }
            } catch {
                hub.logger.debug("backend socket ended", metadata: ["error": "\(error)"])
            }
            if let instance = instanceBox.withLockedValue({ $0 }) { hub.unregister(instance) }
            group.cancelAll()
        }
    }

    /// Handles one message; may return work to run concurrently (the event writer, a command).
    private func handle(_ text: String) async -> (@Sendable () async -> Void)? {
        // Fast path for the message a busy backend sends most: a plain ack in the canonical form
        // ({"type":"ack","id":"…"}, no whitespace or escapes). Same handling as below without the
        // full JSON parse, which was ~16 % of gateway CPU at 10,000 events/s (scripts/bench-hub.sh).
        if let id = Self.plainAckID(text), let instance = instanceBox.withLockedValue({ $0 }) {
            if !hub.acked(id, by: instance) {
                await send(error: "unknown_id", "event '\(id)' is not in flight on this socket (late or duplicate ack)", id: id)
            }
            return nil
        }
        // The same for a batch ({"type":"ack","ids":["…","…"]}): one message, one socket read and
        // one write on the backend's side for many events.
        if let ids = Self.plainAckIDs(text), let instance = instanceBox.withLockedValue({ $0 }) {
            await ack(ids, by: instance)
            return nil
        }
        let json: JSONValue
        do { json = try JSONValue.parse(text) } catch {
            await send(error: "malformed_json", "message is not valid JSON: \(error)")
            return nil
        }
        guard let object = json.objectValue else {
            await send(error: "malformed_message", "expected a JSON object with a \"type\" key")
            return nil
        }
        guard let type = object["type"]?.stringValue else {
            await send(error: "malformed_message", "missing string key \"type\"")
            return nil
        }
        let instance = instanceBox.withLockedValue { $0 }
        switch type {
        case "subscribe":
            return await subscribe(object, existing: instance)
        case "ack", "reply":
            guard let instance else {
                await send(error: "not_subscribed", "send a subscribe message first")
                return nil
            }
            if type == "ack", object["id"] == nil, let list = object["ids"] {
                guard let items = list.arrayValue, !items.isEmpty, items.count <= Self.maxAckBatch else {
                    await send(error: "malformed_message", "ack needs \"ids\": an array of 1 to \(Self.maxAckBatch) event ids")
                    return nil
                }
                var ids: [String] = []
                ids.reserveCapacity(items.count)
                for item in items {
                    guard let id = item.stringValue else {
                        await send(error: "malformed_message", "ack \"ids\" must hold strings only")
                        return nil
                    }
                    ids.append(id)
                }
                await ack(ids, by: instance)
                return nil
            }
            guard let id = object["id"]?.stringValue else {
                await send(error: "malformed_message", "\(type) needs a string \"id\"")
                return nil
            }
            if type == "reply" {
                guard let data = object["data"], data.objectValue != nil else {
                    await send(error: "malformed_message", "reply needs an object \"data\"", id: id)
                    return nil
                }
                // Answered here, or (cluster) by the node holding the pile.
                switch await hub.answer(id, data: data) {
                case .accepted: break
                case .unknown: await send(error: "unknown_id", "no reply is pending for event '\(id)' (late or duplicate)", id: id)
                case .invalid(let problem): await send(error: "invalid_reply", problem, id: id)
                }
            }
            if !hub.acked(id, by: instance) && type == "ack" {
                await send(error: "unknown_id", "event '\(id)' is not in flight on this socket (late or duplicate ack)", id: id)
            }
            return nil
        case "command":
            guard let instance else {
                await send(error: "not_subscribed", "send a subscribe message first")
                return nil
            }
            let requestId = object["requestId"]?.stringValue ?? ""
            guard let pile = object["pile"]?.stringValue, let command = object["command"]?.stringValue else {
                await sendResult(requestId: requestId, .failure("invalid_args", "command needs string \"pile\" and \"command\""))
                return nil
            }
            let args = object["args"]
            let timeout = object["timeout"]
            let deliverWithin = object["deliverWithin"]
            let lane = instance.lane
            if let principal, let denial = principal.refusal(command: command, lane: lane) {
                hub.auth.refuse(denial)
                await sendResult(requestId: requestId, .failure("forbidden", denial))
                return nil
            }
            let limit = hub.config.maxCommandsPerSocket
            guard running.loadThenWrappingIncrement(ordering: .relaxed) < limit else {
                running.wrappingDecrement(ordering: .relaxed)
                hub.commandsRefusedPerSocket.wrappingIncrement(ordering: .relaxed)
                await sendResult(
                    requestId: requestId,
                    .failure("too_many_commands", "this socket already has \(limit) commands running (hubMaxCommandsPerSocket)"))
                return nil
            }
            return { [hub, running] in
                let result = await hub.runCommand(
                    pile: pile, command: command, args: args, senderLane: lane, timeout: timeout, deliverWithin: deliverWithin)
                running.wrappingDecrement(ordering: .relaxed)
                await sendResult(requestId: requestId, result)
            }
        case "drain":
            guard let instance else {
                await send(error: "not_subscribed", "send a subscribe message first")
                return nil
            }
            instance.setDraining()
            hub.notifyLocalInstancesChanged()
            hub.logger.info("backend instance draining", metadata: ["service": "\(instance.service)", "instance": "\(instance.name)"])
            await write(#"{"type":"draining","inFlight":\#(instance.inFlightCount)}"#)
            return nil
        default:
            await send(error: "unknown_type", "unknown message type '\(type)'; expected subscribe, ack, reply, command or drain")
            return nil
        }
    }

    /// The most event ids one batch ack may carry (a backend's `maxInFlight` is at most 100,000).
    static let maxAckBatch = 100_000

    /// Acks each of `ids`; the ids not in flight here get one `unknown_id` error naming them (at
    /// most 20 of them, and how many there were).
    private func ack(_ ids: [String], by instance: BackendInstance) async {
        var unknown: [String] = []
        for id in ids where !hub.acked(id, by: instance) { unknown.append(id) }
        guard !unknown.isEmpty else { return }
        let shown = unknown.prefix(20).map { "'\($0)'" }.joined(separator: ", ")
        let more = unknown.count > 20 ? " and \(unknown.count - 20) more" : ""
        await send(
            error: "unknown_id",
            "\(unknown.count) of \(ids.count) acked events are not in flight on this socket (late or duplicate acks): \(shown)\(more)",
            id: unknown.count == 1 ? unknown[0] : nil)
    }

    /// The ids of `{"type":"ack","ids":["…","…"]}` exactly as written (no whitespace, printable
    /// ASCII ids without quotes or backslashes), else nil (the message then takes the general path).
    static func plainAckIDs(_ text: String) -> [String]? {
        let prefix = #"{"type":"ack","ids":["#.utf8
        let suffix = #"]}"#.utf8
        let bytes = text.utf8
        guard bytes.count > prefix.count + suffix.count, bytes.starts(with: prefix), bytes.reversed().starts(with: suffix.reversed())
        else { return nil }
        var ids: [String] = []
        var i = bytes.index(bytes.startIndex, offsetBy: prefix.count)
        let end = bytes.index(bytes.endIndex, offsetBy: -suffix.count)
        while i < end {
            // "id" then a comma, or the end.
            guard bytes[i] == UInt8(ascii: "\"") else { return nil }
            let start = bytes.index(after: i)
            var j = start
            while j < end, bytes[j] != UInt8(ascii: "\"") {
                guard isPlainIDByte(bytes[j]) else { return nil }
                j = bytes.index(after: j)
            }
            guard j < end, j > start else { return nil }
            ids.append(String(decoding: bytes[start..<j], as: UTF8.self))
            guard ids.count <= maxAckBatch else { return nil }
            i = bytes.index(after: j)
            if i < end {
                guard bytes[i] == UInt8(ascii: ","), bytes.index(after: i) < end else { return nil }
                i = bytes.index(after: i)
            }
        }
        return ids.isEmpty ? nil : ids
    }

    /// A byte an id may hold on the fast paths: printable ASCII other than a quote or a backslash
    /// (an id with either takes the general path, which unescapes it).
    private static func isPlainIDByte(_ b: UInt8) -> Bool {
        b >= 0x20 && b < 0x7F && b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\")
    }

    /// The id of `{"type":"ack","id":"…"}` exactly as written (printable ASCII id without quotes or
    /// backslashes), else nil (the message then takes the general path).
    static func plainAckID(_ text: String) -> String? {
        let prefix = #"{"type":"ack","id":""#.utf8
        let suffix = #""}"#.utf8
        let bytes = text.utf8
        guard bytes.count > prefix.count + suffix.count, bytes.starts(with: prefix), bytes.reversed().starts(with: suffix.reversed())
        else { return nil }
        let start = bytes.index(bytes.startIndex, offsetBy: prefix.count)
        let end = bytes.index(bytes.endIndex, offsetBy: -suffix.count)
        let id = bytes[start..<end]
        guard id.allSatisfy(isPlainIDByte) else { return nil }
        return String(decoding: id, as: UTF8.self)
    }

    private static let knownEvents: Set<String> = Set(YKCMessage.catalogue.map(\.name)).union([
        "pile_online", "pile_offline", "login", "raw_frame", BackendHub.offlineAuthorizationEvent, "command_result", "command_expired",
    ])

    /// Names of letters, digits, '-', '_', '.'; at most 64 bytes, as lane rules allow.
    private static func validTag(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64
            && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 45 || $0 == 46 || $0 == 95 }
    }

    private func subscribe(_ o: [String: JSONValue], existing: BackendInstance?) async -> (@Sendable () async -> Void)? {
        if existing != nil {
            await send(error: "already_subscribed", "one subscription per socket; open another socket for another subscription")
            return nil
        }
        guard let service = o["service"]?.stringValue, Self.validTag(service) else {
            await send(error: "invalid_subscription", "\"service\" must be a name of letters, digits, '-', '_', '.'")
            return nil
        }
        guard let name = o["instance"]?.stringValue, Self.validTag(name) else {
            await send(error: "invalid_subscription", "\"instance\" must be a name of letters, digits, '-', '_', '.'")
            return nil
        }
        var lane = ""
        if let l = o["lane"], l != .null {
            guard let s = l.stringValue, s.isEmpty || Self.validTag(s) else {
                await send(error: "invalid_subscription", "\"lane\" must be \"\" (base) or a tag of letters, digits, '-', '_', '.'")
                return nil
            }
            lane = s
        }
        guard let list = o["events"]?.arrayValue, !list.isEmpty else {
            await send(error: "invalid_subscription", "\"events\" must be a non-empty array of event names or [\"*\"]")
            return nil
        }
        var events: Set<String>? = []
        for e in list {
            guard let s = e.stringValue else {
                await send(error: "invalid_subscription", "\"events\" entries must be strings")
                return nil
            }
            if s == "*" {
                events = nil
                break
            }
            guard Self.knownEvents.contains(s) else {
                await send(error: "invalid_subscription", "unknown event type '\(s)'")
                return nil
            }
            events?.insert(s)
        }
        if let principal, !principal.allows(service: service) || !principal.allows(lane: lane) {
            let denial = principal.allows(service: service)
                ? "token '\(principal.name)' may not subscribe in lane '\(lane)'" : "token '\(principal.name)' may not subscribe as service '\(service)'"
            hub.auth.refuse(denial)
            await send(error: "forbidden", denial)
            return nil
        }
        var maxInFlight = hub.config.defaultMaxInFlight
        if let m = o["maxInFlight"] {
            guard let v = m.intValue, (1...100_000).contains(v) else {
                await send(error: "invalid_subscription", "\"maxInFlight\" must be an integer 1...100000")
                return nil
            }
            maxInFlight = v
        }
        var durable = true
        if let d = o["durable"], d != .null {
            guard let b = d.boolValue else {
                await send(error: "invalid_subscription", "\"durable\" must be true or false")
                return nil
            }
            durable = b
        }
        let instance = hub.register(
            service: service, name: name, lane: lane, events: events, maxInFlight: maxInFlight, durable: durable)
        instanceBox.withLockedValue { $0 = instance }
        var w = JSONWriter()
        w.beginObject()
        w.field("type", "subscribed")
        w.field("service", service)
        w.field("instance", name)
        w.field("lane", lane)
        w.key("events")
        w.beginArray()
        for e in events.map({ Array($0).sorted() }) ?? ["*"] { w.string(e) }
        w.endArray()
        w.field("maxInFlight", maxInFlight)
        w.field("durable", durable)
        w.field("node", hub.nodeId)
        w.endObject()
        await write(w.string)
        // Events go straight from the event loop to the channel from here on, after the
        // confirmation above (already handed to the same loop, so it is written first).
        instance.attach(channel)
        return nil
    }

    private func sendResult(requestId: String, _ result: BackendCommands.Outcome) async {
        var w = JSONWriter()
        w.beginObject()
        if case .queued(let queued) = result {
            // The pile was offline: the command waits for it; its result comes as an event.
            w.field("type", "command_queued")
            w.field("requestId", requestId)
            w.field("ok", true)
            w.field("id", queued.id)
            w.field("status", "queued")
            w.field("pile", queued.pile)
            w.field("command", queued.command)
            w.key("expiresAt")
            QueuedCommand.timestamp(queued.expiresAt, into: &w)
            w.endObject()
            await write(w.string)
            return
        }
        w.field("type", "result")
        w.field("requestId", requestId)
        switch result {
        case .success(let reply):
            w.field("ok", true)
            w.key("reply")
            w.raw(reply)
        case .failure(let code, let message):
            w.field("ok", false)
            APIErrorBody(code, message).writeMembers(into: &w)
        case .queued:
            break
        }
        w.endObject()
        await write(w.string)
    }

    private func send(error code: String, _ message: String, id: String? = nil) async {
        var w = JSONWriter()
        w.beginObject()
        w.field("type", "error")
        APIErrorBody(code, message).writeMembers(into: &w)
        if let id { w.field("id", id) }
        w.endObject()
        await write(w.string)
    }

    private func write(_ text: String) async {
        try? await outbound.write(.text(text))
    }
}
