import Foundation
import YKC

/// The events sent with `replyExpected: true` that wait for a backend's reply (a billing-model
/// request, a card start, a login under the `backend` policy), by event id. Pure state: the
/// hub keeps it under one lock and completes the waiters it hands back.
///
/// A reply becomes the frame the pile gets: the backend's `data` with the fields the pile's
/// request already fixed (pile id, gun, trade serial, …) filled in where the backend left them
/// out. An entry ends exactly once: replied, cancelled (no backend took the event), or expired
/// at its deadline (the gateway's fallback answers then). Bills are not here: the outbox
/// acknowledges them once committed.
///
/// Bounded per pile and in total (`hubPendingRepliesPerPile`, `hubPendingRepliesTotal`): each
/// entry holds a waiter, the request's defaults and a routed event until its deadline, so a pile
/// flooding start or billing-model requests at a silent backend would otherwise grow this by
/// its frame rate times `hubReplyTimeout`. A request over either bound is not sent to a backend;
/// the hub answers it as it answers one whose reply timed out (the fallback), and counts it.
struct BackendPendingReplies<Waiter: Sendable>: Sendable {
    typealias Limit = BackendPendingReplyLimit

    struct Entry: Sendable {
        var waiter: Waiter
        /// The pile the request came from (`PileID.raw`), for the per-pile count.
        var pile: UInt64
        /// The catalogue name of the reply frame (`billing_model_reply`, `login_reply`, …).
        var replyName: String
        /// Fields of the reply taken from the request, used where the backend's reply has none.
        var defaults: [String: JSONValue]
        var deadline: Date
    }

    private var entries: [String: Entry] = [:]
    /// Entries per pile (a pile with none has no key).
    private var perPile: [UInt64: Int] = [:]
    /// Requests refused by each bound since start.
    private(set) var refused: [Limit: Int] = [:]

    init() {}

    var count: Int { entries.count }

    /// The entries waiting for `pile`'s requests.
    func count(pile: UInt64) -> Int { perPile[pile] ?? 0 }

    /// Waits for the reply to event `id`, unless `pile` already has `perPileLimit` entries or all
    /// piles `totalLimit`: then nothing is stored, the refusal is counted and its bound returned
    /// (the caller answers the request without a backend).
    mutating func expect(
        id: String, pile: UInt64, replyName: String, defaults: [String: JSONValue], deadline: Date, waiter: Waiter,
        perPileLimit: Int = .max, totalLimit: Int = .max
    ) -> Limit? {
        let limit: Limit? =
            perPile[pile, default: 0] >= perPileLimit ? .pile : entries.count >= totalLimit ? .total : nil
        if let limit {
            refused[limit, default: 0] += 1
            return limit
        }
        if let old = entries.updateValue(
            Entry(waiter: waiter, pile: pile, replyName: replyName, defaults: defaults, deadline: deadline), forKey: id)
        {
            release(old.pile)
        }
        perPile[pile, default: 0] += 1
        return nil
    }

    /// Stops waiting (the event reached no backend); returns the entry, if it was waiting.
    mutating func cancel(id: String) -> Entry? {
        remove(id: id)
    }

    private mutating func remove(id: String) -> Entry? {
        guard let entry = entries.removeValue(forKey: id) else { return nil }
        release(entry.pile)
        return entry
    }

    private mutating func release(_ pile: UInt64) {
        let n = perPile[pile, default: 0] - 1
        perPile[pile] = n > 0 ? n : nil
    }

    /// A backend's reply to event `id`: the frame for the pile and the waiter to give it to, or
    /// nil when nothing waits for `id` (late, unknown or already answered). A reply that does not
    /// make a valid frame throws and leaves the entry waiting (a corrected reply, or the
    /// deadline, ends it).
    mutating func reply(id: String, data: JSONValue) throws(YKCJSONError) -> (waiter: Waiter, message: YKCMessage)? {
        guard let entry = entries[id] else { return nil }
        var object = data.objectValue ?? [:]
        for (k, v) in entry.defaults where object[k] == nil { object[k] = v }
        if entry.replyName == TransactionRecordAck.name, object["result"] == nil { object["result"] = .string("accepted") }
        if entry.replyName == "login_reply", object["result"] == nil, let accepted = object["accepted"]?.boolValue {
            object["result"] = .string(accepted ? "accepted" : "rejected")
        }
        let message = try YKCMessage.fromJSON(name: entry.replyName, .object(object))
        _ = remove(id: id)
        return (entry.waiter, message)
    }

    /// Removes and returns the entries whose deadline has passed at `now`.
    mutating func expire(now: Date) -> [Entry] {
        var gone: [Entry] = []
        for (id, entry) in entries where entry.deadline <= now {
            gone.append(entry)
            _ = remove(id: id)
        }
        return gone
    }

    /// The fields of the reply to `request` that the request fixes: the pile, and where the
    /// request has them, its gun, trade serial, billing model and parallel serial.
    static func defaults(for request: YKCMessage, pile: PileID) -> [String: JSONValue] {
        var defaults: [String: JSONValue] = ["pileId": .string(pile.description)]
        if let gun = request.gun { defaults["gun"] = .number(Double(gun)) }
        if let t = request.tradeSerial { defaults["tradeSerial"] = .string(t.description) }
        switch request {
        case .billingModelVerify(let v): defaults["billingModel"] = .string(v.billingModel.description)
        case .parallelStartRequest(let r): defaults["parallelSerial"] = .string(r.parallelSerial.description)
        default: break
        }
        return defaults
    }
}
