import Foundation
import NIOCore
import YKC

/// The JSON envelope every event a backend receives is wrapped in (docs/BACKEND-PROTOCOL.md,
/// "Events"): id, type name, frame code, pile, gun, lane, node, time received, whether a reply
/// is expected, and the decoded frame as `data`.
///
/// `data` writes straight into the envelope's buffer, so the bytes that go to the WebSocket (and
/// into the outbox) are built once per event. What every envelope repeats (node, event-id prefix,
/// the piles' UTC offset) is fixed here, read once per event.
struct BackendEventEnvelope: Sendable {
    var nodeId: String
    /// "node-boot-", the fixed part of every event id: unique per process run.
    var eventIdPrefix: String
    /// The piles' local time offset, for the times inside `data`.
    var pileUTCOffsetSeconds: Int

    /// - Parameter bootTag: random per process run, so event ids never repeat across restarts.
    init(nodeId: String = "pilegate", bootTag: String, pileUTCOffsetSeconds: Int = 8 * 3600) {
        self.nodeId = nodeId
        self.eventIdPrefix = "\(nodeId)-\(bootTag)-"
        self.pileUTCOffsetSeconds = pileUTCOffsetSeconds
    }

    /// "node-boot-N" for the `n`th event: increasing, so a backend can order a pile's events.
    func eventId(_ n: UInt64) -> String {
        eventIdPrefix + String(n)
    }

    /// The envelope's JSON text for one event of `pile` in `lane`. `extra` writes further
    /// envelope fields before `data` (a bill's `offlineAuthorization`).
    func encode(
        id: String, event: String, code: UInt8?, pile: PileID, lane: String, gun: Int?, receivedAt: Date,
        replyExpected: Bool, extra: ((inout JSONWriter) -> Void)? = nil, data: (inout JSONWriter) -> Void
    ) -> ByteBuffer {
        var w = JSONWriter(buffer: ByteBufferAllocator().buffer(capacity: 512), utcOffsetSeconds: pileUTCOffsetSeconds)
        w.beginObject()
        w.field("type", "event")
        w.field("id", id)
        w.field("event", event)
        w.key("code")
        if let code { w.int(code) } else { w.null() }
        w.key("pile")
        w.pileId(pile)
        w.key("gun")
        if let gun { w.int(gun) } else { w.null() }
        w.field("lane", lane)
        w.field("node", nodeId)
        w.key("receivedAt")
        w.utcTimestamp(microsecondsSince1970: Int64((receivedAt.timeIntervalSince1970 * 1e6).rounded()))
        w.field("replyExpected", replyExpected)
        extra?(&w)
        w.key("data")
        data(&w)
        w.endObject()
        return w.buffer
    }
}
