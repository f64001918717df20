import Foundation
import NIOCore

/// Frames the server's byte stream into `ServerOperation`s: a control line ended by CRLF, then for
/// MSG/HMSG exactly the announced number of payload bytes and a CRLF.
///
/// It consumes nothing until a whole operation is buffered, so any split of the bytes (one byte at a
/// time, a CRLF torn in two, a payload over several reads) yields the same operations. Every input is
/// bounded: a control line longer than `maxControlLine` or a payload above `maxPayload` is a protocol
/// violation, not a reason to buffer without end.
struct ServerOperationDecoder: ByteToMessageDecoder {
    typealias InboundOut = ServerOperation

    /// INFO lines carry JSON with `connect_urls`; other control lines are short.
    var maxControlLine: Int
    /// Largest MSG/HMSG body accepted. Lowered to the server's `max_payload` (plus `headerAllowance`)
    /// when its INFO arrives: the server never sends a larger message, so a size above it is a broken or
    /// hostile peer, and the connection is closed instead of buffering it.
    var maxPayload: Int

    /// Headers JetStream adds to stored messages it delivers (`Nats-Stream`, `Nats-Sequence`, status
    /// lines), which may take a message published at exactly `max_payload` over it.
    static let headerAllowance = 64 * 1024

    init(maxControlLine: Int = 64 * 1024, maxPayload: Int = 64 * 1024 * 1024) {
        self.maxControlLine = maxControlLine
        self.maxPayload = maxPayload
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let operation = try Self.parse(&buffer, maxControlLine: maxControlLine, maxPayload: maxPayload) else {
            return .needMoreData
        }
        if case .info(let info) = operation, info.maxPayload > 0 {
            maxPayload = min(maxPayload, info.maxPayload + Self.headerAllowance)
        }
        context.fireChannelRead(wrapInboundOut(operation))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        try decode(context: context, buffer: &buffer)
    }

    /// Parses one operation from the front of `buffer`, consuming it; nil (and nothing consumed) when
    /// the operation is not complete yet.
    static func parse(_ buffer: inout ByteBuffer, maxControlLine: Int, maxPayload: Int) throws -> ServerOperation? {
        let view = buffer.readableBytesView
        guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
            if view.count > maxControlLine {
                throw NATSError.protocolViolation("control line longer than \(maxControlLine) bytes")
            }
            return nil
        }
        let lineLength = newline - view.startIndex
        if lineLength > maxControlLine {
            throw NATSError.protocolViolation("control line longer than \(maxControlLine) bytes")
        }
        var lineEnd = newline
        if lineEnd > view.startIndex, view[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
        let line = view[view.startIndex..<lineEnd]
        let consumedLine = lineLength + 1

        let verb = Self.verb(of: line)
        switch verb {
        case "MSG", "HMSG":
            let fields = Self.fields(of: line)
            let withHeaders = verb == "HMSG"
            // MSG subject sid [reply] size; HMSG subject sid [reply] header-size total-size
            let minimum = withHeaders ? 5 : 4
            guard fields.count == minimum || fields.count == minimum + 1 else {
                throw NATSError.protocolViolation("malformed \(verb) line")
            }
            let subject = String(decoding: fields[1], as: UTF8.self)
            guard let sid = UInt64(decimal: fields[2]) else { throw NATSError.protocolViolation("bad sid") }
            let reply = fields.count == minimum + 1 ? String(decoding: fields[3], as: UTF8.self) : nil
            guard let total = Int(decimal: fields[fields.count - 1]), total <= maxPayload else {
                throw NATSError.protocolViolation("bad or oversized \(verb) size")
            }
            var headerLength = 0
            if withHeaders {
                guard let length = Int(decimal: fields[fields.count - 2]), length <= total else {
                    throw NATSError.protocolViolation("bad HMSG header size")
                }
                headerLength = length
            }
            guard buffer.readableBytes >= consumedLine + total + 2 else { return nil }
            buffer.moveReaderIndex(forwardBy: consumedLine)
            var headers: NATSHeaders?
            if withHeaders {
                guard let block = buffer.readSlice(length: headerLength) else { return nil }
                headers = try NATSHeaders.parse(block.readableBytesView)
            }
            guard let payload = buffer.readSlice(length: total - headerLength),
                let trailer = buffer.readBytes(length: 2)
            else { return nil }
            guard trailer == [13, 10] else { throw NATSError.protocolViolation("payload not followed by CRLF") }
            return .message(NATSMessage(subject: subject, sid: sid, replyTo: reply, headers: headers, payload: payload))
        case "PING":
            buffer.moveReaderIndex(forwardBy: consumedLine)
            return .ping
        case "PONG":
            buffer.moveReaderIndex(forwardBy: consumedLine)
            return .pong
        case "+OK":
            buffer.moveReaderIndex(forwardBy: consumedLine)
            return .ok
        case "-ERR":
            var text = String(decoding: line.dropFirst(4), as: UTF8.self).trimmingCharacters(in: .whitespaces)
            if text.hasPrefix("'"), text.hasSuffix("'"), text.count >= 2 { text = String(text.dropFirst().dropLast()) }
            buffer.moveReaderIndex(forwardBy: consumedLine)
            return .error(text)
        case "INFO":
            let json = line.dropFirst(4)
            let info: ServerInfo
            do {
                info = try JSONDecoder().decode(ServerInfo.self, from: Data(json))
            } catch {
                throw NATSError.protocolViolation("INFO is not valid JSON: \(error)")
            }
            buffer.moveReaderIndex(forwardBy: consumedLine)
            return .info(info)
        default:
            throw NATSError.protocolViolation("unknown operation '\(String(decoding: line.prefix(16), as: UTF8.self))'")
        }
    }

    /// The first token, upper-cased (the protocol's verbs are case-insensitive).
    private static func verb(of line: ByteBufferView.SubSequence) -> String {
        let token = line.prefix { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
        return String(decoding: token, as: UTF8.self).uppercased()
    }

    /// Space/tab separated tokens of a control line.
    private static func fields(of line: ByteBufferView.SubSequence) -> [ByteBufferView.SubSequence] {
        line.split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") })
    }
}

extension FixedWidthInteger {
    /// Parses ASCII decimal digits without building a String; nil on anything else or on overflow.
    init?<Bytes: Collection>(decimal bytes: Bytes) where Bytes.Element == UInt8 {
        guard !bytes.isEmpty, bytes.count <= 19 else { return nil }
        var value: Self = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (multiplied, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (added, overflow2) = multiplied.addingReportingOverflow(Self(byte - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return nil }
            value = added
        }
        self = value
    }
}
