import Foundation
import NIOCore
import YKC

/// Charging through a backend outage (issue 13.1): a card or VIN start request (0x31, 0xA1) that
/// no backend answers is decided by the offline policy (`OfflineAuthorizer`) instead of being
/// refused outright.
///
/// An approval is recorded before the pile hears of it: the `offline_authorization` event is
/// committed to the outbox (delivered to every durable service that takes it, once per trade
/// serial, when backends return) and the issued serial to the ledger (so the session's bill is
/// marked `offlineAuthorization` in its event). Only then does the pile get its 0x32/0xA2, with
/// the gateway's trade serial and the cap as its balance. If either store fails, the pile is
/// refused as without the policy: the gateway never lets a session run that it has not recorded.
extension BackendHub {
    /// Why no backend decided a request.
    enum Outage: String, Sendable {
        /// No backend subscribed to the request's event.
        case noBackend = "no_backend"
        /// Backends subscribed, but none could take it (ejected, draining, queue full).
        case unreachable
        /// It went to a backend that did not reply within `hubReplyTimeout`.
        case timeout
        /// It was not sent: the pile already had `hubPendingRepliesPerPile` requests waiting for
        /// a backend's reply, or all piles `hubPendingRepliesTotal` (`BackendPendingReplies`).
        case overloaded
    }

    /// Answers a pile request no backend decided: the offline policy for start requests, the
    /// gateway's `fallback` otherwise (and for a start the policy refuses: `pile_disabled`).
    func answerWithoutBackend(
        _ message: YKCMessage, code: UInt8, session: PileSessionInfo, receivedAt: Date, outage: Outage, fallback: YKCMessage?,
        respond: EventLoopPromise<YKCMessage?>
    ) {
        guard let authorizer = offlineAuthorizer, let (credential, gun) = OfflineAuthorizer.startRequest(message) else {
            return respond.succeed(fallback)
        }
        let now = Date()
        let model = billingModels?.model(for: session.pileId)
        switch authorizer.decide(credential, billingModel: model, now: now) {
        case .refuse(let reason):
            authorizer.count(refused: reason)
            if reason != .off {
                logger.notice(
                    "start refused offline: no backend answered",
                    metadata: [
                        "pile": "\(session.pileId)", "gun": "\(gun.number)", "reason": "\(reason.rawValue)", "outage": "\(outage.rawValue)",
                    ])
            }
            respond.succeed(fallback)
        case .approve(let grant, let capCents):
            approveOffline(
                message, code: code, credential: credential, gun: gun, grant: grant, capCents: capCents, session: session,
                receivedAt: receivedAt, outage: outage, fallback: fallback, authorizer: authorizer, respond: respond)
        }
    }

    private func approveOffline(
        _ message: YKCMessage, code: UInt8, credential: OfflineCredential?, gun: GunNumber, grant: OfflineAuthorizationPolicy.Grant,
        capCents: Int64, session: PileSessionInfo, receivedAt: Date, outage: Outage, fallback: YKCMessage?,
        authorizer: OfflineAuthorizer, respond: EventLoopPromise<YKCMessage?>
    ) {
        let now = Date()
        let offset = envelope.pileUTCOffsetSeconds
        let serial = authorizer.newTradeSerial(pile: session.pileId, gun: gun, now: now, utcOffsetSeconds: offset)
        let last = credential.flatMap { authorizer.cache.decision(for: $0) }
        let zeroCard = BCDDigits("0", byteCount: 8) ?? "0000000000000000"
        let logical = grant == .recent ? (last.flatMap { BCDDigits($0.logicalCardNumber, byteCount: 8) } ?? zeroCard) : zeroCard
        let balance = YKCDecimal(units: capCents, scale: 2)
        let reply: YKCMessage
        var parallelSerial: String?
        switch message {
        case .parallelStartRequest(let r):
            parallelSerial = r.parallelSerial.description
            reply = .parallelStartRequestReply(
                ParallelStartRequestReply(
                    tradeSerial: serial, pileId: r.pileId, gun: r.gun, logicalCardNumber: logical, balance: balance, authResult: .succeeded,
                    failureReason: .noReason, parallelSerial: r.parallelSerial))
        default:
            reply = .startRequestReply(
                StartRequestReply(
                    tradeSerial: serial, pileId: session.pileId, gun: gun, logicalCardNumber: logical, balance: balance,
                    authResult: .succeeded, failureReason: .noReason))
        }
        let (id, text) = envelope(event: Self.offlineAuthorizationEvent, code: code, session: session, gun: gun.number, receivedAt: receivedAt) { w in
            w.beginObject()
            w.key("pileId")
            w.pileId(session.pileId)
            w.field("gun", gun.number)
            w.field("tradeSerial", serial.description)
            w.field("startMethod", credential?.kind.rawValue ?? "unknown")
            w.field("credential", credential?.value ?? "")
            w.field("reason", grant.rawValue)
            w.field("outage", outage.rawValue)
            w.field("balance", balance)
            w.field("logicalCardNumber", logical.description)
            w.key("authorizedAt")
            w.utcTimestamp(microsecondsSince1970: Int64((now.timeIntervalSince1970 * 1e6).rounded()))
            w.key("lastApprovedAt")
            if grant == .recent, let last {
                w.utcTimestamp(microsecondsSince1970: Int64((last.decidedAt.timeIntervalSince1970 * 1e6).rounded()))
            } else {
                w.null()
            }
            if let parallelSerial { w.field("parallelSerial", parallelSerial) }
            w.endObject()
        }
        let loop = respond.futureResult.eventLoop
        let stored = loop.makePromise(of: Outbox.AppendResult.self)
        let recorded = loop.makePromise(of: Void.self)
        outbox.append(
            OutboxEvent(
                id: id, event: Self.offlineAuthorizationEvent, code: code, pile: session.pileId, gun: gun.number, lane: session.lane,
                tradeSerial: serial, receivedAt: receivedAt, payload: text),
            promise: stored)
        authorizer.ledger.record(
            OfflineAuthorizationLedger.Entry(
                tradeSerial: serial, pile: session.pileId.description, gun: gun.number, credential: credential?.description ?? "",
                reason: grant.rawValue, capCents: capCents, authorizedAt: now, eventId: id),
            done: recorded)
        stored.futureResult.and(recorded.futureResult).whenComplete { [self] result in
            switch result {
            case .success((.stored, _)):
                authorizer.count(approved: grant)
                logger.notice(
                    "start approved offline: no backend answered",
                    metadata: [
                        "pile": "\(session.pileId)", "gun": "\(gun.number)", "trade_serial": "\(serial)", "reason": "\(grant.rawValue)",
                        "cap": "\(balance)", "outage": "\(outage.rawValue)",
                    ])
                respond.succeed(reply)
                publishToTransient(id: id, text: text, event: Self.offlineAuthorizationEvent, session: session)
            case .success((.duplicate, _)), .failure:
                authorizer.count(refused: .storeFailed)
                logger.error(
                    "start refused: its offline authorization could not be recorded",
                    metadata: ["pile": "\(session.pileId)", "gun": "\(gun.number)", "trade_serial": "\(serial)"])
                respond.succeed(fallback)
            }
        }
    }

    static let offlineAuthorizationEvent = "offline_authorization"

    /// The `offlineAuthorization` field of a bill's event whose session the gateway approved.
    static func writeOfflineAuthorization(_ entry: OfflineAuthorizationLedger.Entry, into w: inout JSONWriter) {
        w.key("offlineAuthorization")
        w.beginObject()
        w.field("eventId", entry.eventId)
        w.field("reason", entry.reason)
        w.field("cap", YKCDecimal(units: entry.capCents, scale: 2))
        w.key("authorizedAt")
        w.utcTimestamp(microsecondsSince1970: Int64((entry.authorizedAt.timeIntervalSince1970 * 1e6).rounded()))
        w.endObject()
    }
}
