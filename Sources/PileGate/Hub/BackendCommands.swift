import Foundation
import HTTPTypes
import NIOCore
import YKC

/// The commands backends send to piles — over the WebSocket (`{"type":"command"}`) or HTTP
/// (`POST /v1/piles/{id}/commands/{command}`) — checked, sent to the pile's session, and its
/// decoded reply handed back (docs/BACKEND-PROTOCOL.md, "Commands"; docs/API.md).
///
/// Every argument is checked before the pile is looked up, so a bad command gets
/// `invalid_args` / `unknown_command` whether or not the pile is online; failures carry the
/// error codes that `httpStatus(for:)` maps to HTTP statuses. A command with `deliverWithin`
/// for a pile that is not online here waits for it (`QueuedCommands`).
struct BackendCommands: Sendable {
    /// Platform-initiated frames a backend may send, by command name.
    static let names: Set<String> = Set(
        PileReplyCodes.commandReply.keys.compactMap { YKCMessageInfo.of(code: $0)?.name })

    /// The timeouts a command may ask for, in seconds (as `hubCommandTimeout` allows).
    static let timeoutRange: ClosedRange<Double> = 0.01...3600

    /// Why a command's input was refused, in one sentence.
    struct Failure: Error {
        var message: String
    }

    /// What a command came to: the pile's reply as the JSON of `{"event","code","data"}`, or an
    /// error code (`invalid_args`, `unknown_command`, `pile_offline`, `lane_mismatch`,
    /// `timeout`, …) and a message.
    enum Outcome: Sendable {
        case success(String)
        case failure(String, String)
        /// The pile was offline and the command waits for it (`deliverWithin`).
        case queued(QueuedCommand)

        /// An error code and message, before anything was sent.
        struct Refusal: Error, Sendable {
            var code: String
            var message: String
            init(_ code: String, _ message: String) {
                self.code = code
                self.message = message
            }
        }
    }

    /// Where sessions are found by pile id.
    let directory: SessionDirectory
    /// The reply timeout of a command that names none.
    let defaultTimeout: TimeInterval
    /// The piles' local time offset (`time_sync` without a time sends the gateway's clock).
    let pileUTCOffsetSeconds: Int
    /// Where a billing model a pile accepted (0x58 answered with success) is remembered.
    let billingModels: BillingModelCache?

    /// A command's `timeout` as sent (a JSON value or query text), checked: nil = the default; a
    /// value that is not a finite number of seconds in `timeoutRange` is an error naming the
    /// range (it used to trap converting to nanoseconds).
    static func timeout(_ value: JSONValue?) -> Result<TimeInterval?, Failure> {
        guard let value, value != .null else { return .success(nil) }
        let seconds: Double? =
            switch value {
            case .number(let n): n
            case .string(let s): Double(s)
            default: nil
            }
        guard let seconds, seconds.isFinite, timeoutRange.contains(seconds) else {
            let shown = value.stringValue ?? value.description
            return .failure(
                Failure(message: "timeout must be a number of seconds \(timeoutRange.lowerBound)...\(Int(timeoutRange.upperBound)), got \(shown)"))
        }
        return .success(seconds)
    }

    /// The `deliverWithin` a command may carry, in seconds: up to a week.
    static let deliverWithinRange: ClosedRange<Double> = 1...604_800

    /// A command's `deliverWithin` as sent (a JSON value or query text), checked like
    /// `timeout`: nil = not asked; anything but a finite number of seconds in
    /// `deliverWithinRange` is an error naming the range.
    static func deliverWithin(_ value: JSONValue?) -> Result<TimeInterval?, Failure> {
        guard let value, value != .null else { return .success(nil) }
        let seconds: Double? =
            switch value {
            case .number(let n): n
            case .string(let s): Double(s)
            default: nil
            }
        guard let seconds, seconds.isFinite, deliverWithinRange.contains(seconds) else {
            let shown = value.stringValue ?? value.description
            return .failure(
                Failure(
                    message: "deliverWithin must be a number of seconds \(Int(deliverWithinRange.lowerBound))...\(Int(deliverWithinRange.upperBound)), got \(shown.prefix(64))"))
        }
        return .success(seconds)
    }

    /// A command checked and ready to send: its frame, and what it was made from (a queued
    /// command stores `args` and makes the frame again when it goes out).
    struct Prepared: Sendable {
        var pileId: PileID
        var command: String
        /// The arguments as sent, with `pileId` set (a `time_sync` without `time` stays without).
        var args: [String: JSONValue]
        var message: YKCMessage
        var timeout: TimeInterval?
    }

    /// Checks a command's input and builds its frame: every argument is checked before the pile
    /// is looked up. `timeout` is the caller's value as sent.
    func prepare(pile pileText: String, command: String, args: JSONValue?, timeout timeoutValue: JSONValue?) -> Result<Prepared, Outcome.Refusal> {
        let timeout: TimeInterval?
        switch Self.timeout(timeoutValue) {
        case .success(let t): timeout = t
        case .failure(let f): return .failure(.init("invalid_args", f.message))
        }
        guard let pileId = PileID(input: pileText) else {
            return .failure(.init("invalid_args", "pile must be \(PileID.inputRule), got '\(pileText.prefix(64))'"))
        }
        guard Self.names.contains(command) else {
            return .failure(.init("unknown_command", "unknown command '\(command.prefix(64))'; one of \(Self.names.sorted().joined(separator: ", "))"))
        }
        var object = args?.objectValue ?? [:]
        if args != nil && args?.objectValue == nil { return .failure(.init("invalid_args", "args must be a JSON object")) }
        object["pileId"] = .string(pileId.description)
        var frameArgs = object
        if command == "time_sync" && frameArgs["time"] == nil {
            frameArgs["time"] = .string(CP56Time2a(date: Date(), utcOffsetSeconds: pileUTCOffsetSeconds).iso8601(utcOffsetSeconds: pileUTCOffsetSeconds))
        }
        do {
            let message = try YKCMessage.fromJSON(name: command, .object(frameArgs))
            return .success(Prepared(pileId: pileId, command: command, args: object, message: message, timeout: timeout))
        } catch {
            return .failure(.init("invalid_args", error.description))
        }
    }

    /// Runs a command for a backend of lane `senderLane` ("" = base, which may command any pile;
    /// a lane's backend only its lane's piles). `timeout` is the caller's value as sent. With
    /// `deliverWithin` (seconds, as sent) and a pile that is not online here, the command is
    /// queued in `queue` instead (`QueuedCommands`) and the outcome is `.queued`.
    func run(
        pile pileText: String, command: String, args: JSONValue?, senderLane: String, timeout timeoutValue: JSONValue?,
        deliverWithin deliverWithinValue: JSONValue? = nil, queue: QueuedCommands? = nil
    ) async -> Outcome {
        let deliverWithin: TimeInterval?
        switch Self.deliverWithin(deliverWithinValue) {
        case .success(let d): deliverWithin = d
        case .failure(let f): return .failure("invalid_args", f.message)
        }
        let prepared: Prepared
        switch prepare(pile: pileText, command: command, args: args, timeout: timeoutValue) {
        case .success(let p): prepared = p
        case .failure(let r): return .failure(r.code, r.message)
        }
        guard let session = directory.session(for: prepared.pileId) else {
            if let deliverWithin {
                guard let queue else { return .failure("unavailable", "commands cannot be queued: the queued-command store is not open") }
                return await queue.enqueue(prepared, deliverWithin: deliverWithin, senderLane: senderLane)
            }
            return .failure("pile_offline", "pile \(prepared.pileId) is not online on this gateway")
        }
        return await send(prepared, to: session, senderLane: senderLane)
    }

    /// Sends a prepared command to a session and waits for the pile's reply (or the timeout).
    func send(_ prepared: Prepared, to session: PileSessionHandle, senderLane: String) async -> Outcome {
        if !senderLane.isEmpty && session.info.lane != senderLane {
            return .failure("lane_mismatch", "pile \(prepared.pileId) is in lane '\(session.info.lane)', the sender in '\(senderLane)'")
        }
        let wait = TimeAmount.fromSeconds(prepared.timeout ?? defaultTimeout)
        let message = prepared.message
        do {
            let reply = try await session.request(message, timeout: wait).get()
            if case .billingModelSet = message, case .billingModelSetReply(let r) = reply, r.result == .succeeded {
                billingModels?.remember(message)
            }
            var w = JSONWriter(utcOffsetSeconds: pileUTCOffsetSeconds)
            w.beginObject()
            w.field("event", reply.name)
            w.field("code", reply.code)
            w.key("data")
            reply.writeJSON(into: &w)
            w.endObject()
            return .success(w.string)
        } catch let e as PileCommandError {
            return .failure(e.code, e.description)
        } catch {
            return .failure("error", "\(error)")
        }
    }

    /// The HTTP status of a failed command, by its error code.
    static func httpStatus(for code: String) -> HTTPResponse.Status {
        switch code {
        case "pile_offline": .notFound
        case "timeout": .gatewayTimeout
        case "node_unreachable": .badGateway
        case "lane_mismatch": .forbidden
        case "too_many_commands": .tooManyRequests
        case "unavailable": .serviceUnavailable
        default: .badRequest
        }
    }
}
