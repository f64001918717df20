import Foundation
import YKC

/// A command a backend asked to wait for an offline pile (`deliverWithin`), as the queued-command
/// store keeps it (SQLite table `queued_commands`) and the admin API lists it
/// (`GET /v1/piles/{id}/commands/queued`, docs/API.md).
///
/// `args` is the command's JSON object as the backend sent it (with `pileId`), checked when it
/// was queued and turned into a frame again only when it is sent: a `time_sync` without a
/// `time` then carries the clock of the moment it goes out, not of the moment it was queued.
public struct QueuedCommand: Sendable, Equatable {
    /// The queued id: returned when it was queued, the `id` of its `command_result` or
    /// `command_expired` event, and the key to cancel it.
    public var id: String
    /// Queue order across the whole store (SQLite's AUTOINCREMENT: never reused).
    public var seq: Int64
    public var pile: String
    public var command: String
    /// The command's arguments, compact JSON text; nil in lists that leave them out.
    public var args: String?
    /// The lane of the backend that queued it ("" = base): the pile must be in it when the
    /// command goes out, and the command's result event is routed to it.
    public var lane: String
    /// Seconds to wait for the pile's reply once sent; nil = `hubCommandTimeout`.
    public var timeout: Double?
    public var queuedAt: Date
    /// When it expires if the pile has not logged in by then.
    public var expiresAt: Date
    /// When it was taken for sending (it will not be sent again); nil while it waits.
    public var takenAt: Date?

    /// Whether the command's `deliverWithin` has passed at `now`.
    func isExpired(at now: Date) -> Bool { expiresAt <= now }

    /// The command as the admin API lists it and as the 202 of a queued command describes it:
    /// times in UTC with microseconds, as event envelopes carry them; `args` as a JSON object
    /// when present.
    func writeJSON(into w: inout JSONWriter) {
        w.beginObject()
        w.field("id", id)
        w.field("pile", pile)
        w.field("command", command)
        w.field("status", takenAt == nil ? "queued" : "sending")
        w.field("lane", lane)
        w.key("timeout")
        if let timeout { w.double(timeout) } else { w.null() }
        w.key("queuedAt")
        Self.timestamp(queuedAt, into: &w)
        w.key("expiresAt")
        Self.timestamp(expiresAt, into: &w)
        if let takenAt {
            w.key("takenAt")
            Self.timestamp(takenAt, into: &w)
        }
        if let args {
            w.key("args")
            w.raw(args)
        }
        w.endObject()
    }

    static func timestamp(_ date: Date, into w: inout JSONWriter) {
        w.utcTimestamp(microsecondsSince1970: Int64((date.timeIntervalSince1970 * 1e6).rounded()))
    }
}
