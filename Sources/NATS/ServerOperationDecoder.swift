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
        case .msg, .hmsg:
            let f = ControlFields(line)
            func fields(_ k: Int) -> ByteBufferView.SubSequence { line[f[k]] }
            let withHeaders = verb == .hmsg
            // MSG subject sid [reply] size; HMSG subject sid [reply] header-size total-size
            let minimum = withHeaders ? 5 : 4
            guard f.count == minimum || f.count == minimum + 1 else {
                throw NATSError.protocolViolation("malformed \(withHeaders ? "HMSG" : "MSG") line")
            }
            let subject = String(decoding: fields(1), as: UTF8.self)
            guard let sid = UInt64(decimal: fields(2)) else { throw NATSError.protocolViolation("bad sid") }
            let reply = f.count == minimum + 1 ? String(decoding: fields(3), as: UTF8.self) : nil
            guard let total = Int(decimal: fields(f.count - 1)), total <= maxPayload else {
                throw NATSError.protocolViolation("bad or oversized \(withHeaders ? "HMSG" : "MSG") size")
            }
            var headerLength = 0
            if withHeaders {
                guard let length = Int(decimal: fields(f.count - 2)), length <= total else {
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
                let trailer = buffer.readInteger(as: UInt16.self)
            else { return nil }
            guard trailer == 0x0D0A else { throw NATSError.protocolViolation("payload not followed by CRLF") }
            return .message(NATSMessage(subject: subject, sid: sid, replyTo: reply, headers: headers, payload: payload))
        case .ping:
            buffer.moveReaderIndex(forwardBy: consumedLine)
            return .ping
        case .pong:
            buffer.moveReaderIndex(forwardBy: consumedLine)
            return .pong
        case .ok:
            buffer.moveReaderIndex(forwardBy: consumedLine)
            return .ok
        case .err:
            var text = String(decoding: line.dropFirst(4), as: UTF8.self).trimmingCharacters(in: .whitespaces)
            if text.hasPrefix("'"), text.hasSuffix("'"), text.count >= 2 { text = String(text.dropFirst().dropLast()) }
            buffer.moveReaderIndex(forwardBy: consumedLine)
            return .error(text)
        case .info:
            let json = line.dropFirst(4)
            let info: ServerInfo
            do {
                info = try JSONDecoder().decode(ServerInfo.self, from: Data(json))
            } catch {
                throw NATSError.protocolViolation("INFO is not valid JSON: \(error)")
            }
            buffer.moveReaderIndex(forwardBy: consumedLine)
            return .info(info)
        case .unknown:
            throw NATSError.protocolViolation("unknown operation '\(String(decoding: line.prefix(16), as: UTF8.self))'")
        }
    }

    enum Verb { case msg, hmsg, ping, pong, ok, err, info, unknown }

    /// The first token (the protocol's verbs are case-insensitive), matched on the bytes: this runs
    /// for every message.
    static func verb(of line: ByteBufferView.SubSequence) -> Verb {
        var word: UInt64 = 0
        var length = 0
        for byte in line {
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { break }
            length += 1
            guard length <= 4 else { return .unknown }
            let upper = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) ? byte - 32 : byte
            word = word << 8 | UInt64(upper)
        }
        switch (length, word) {
        case (3, 0x4D_53_47): return .msg  // MSG
        case (4, 0x48_4D_53_47): return .hmsg  // HMSG
        case (4, 0x50_49_4E_47): return .ping  // PING
        case (4, 0x50_4F_4E_47): return .pong  // PONG
        case (3, 0x2B_4F_4B): return .ok  // +OK
        case (4, 0x2D_45_52_52): return .err  // -ERR
        case (4, 0x49_4E_46_4F): return .info  // INFO
        default: return .unknown
        }
    }

    /// The space/tab separated tokens of a MSG/HMSG line, as index ranges into it: at most six
    /// are kept (HMSG with a reply has six), `count` says how many there were. No array per message.
    struct ControlFields {
        private(set) var count = 0
        private var ranges: (Range<Int>, Range<Int>, Range<Int>, Range<Int>, Range<Int>, Range<Int>) =
            (0..<0, 0..<0, 0..<0, 0..<0, 0..<0, 0..<0)

        init(_ line: ByteBufferView.SubSequence) {
            var i = line.startIndex
            let end = line.endIndex
            while i < end {
                while i < end, line[i] == UInt8(ascii: " ") || line[i] == UInt8(ascii: "\t") { i += 1 }
                guard i < end else { break }
                let start = i
                while i < end, line[i] != UInt8(ascii: " "), line[i] != UInt8(ascii: "\t") { i += 1 }
                switch count {
                case 0: ranges.0 = start..<i
                case 1: ranges.1 = start..<i
                case 2: ranges.2 = start..<i
                case 3: ranges.3 = start..<i
                case 4: ranges.4 = start..<i
                case 5: ranges.5 = start..<i
                default: break
                }
                count += 1
            }
        }

        subscript(k: Int) -> Range<Int> {
            switch k {
            case 0: ranges.0
            case 1: ranges.1
            case 2: ranges.2
            case 3: ranges.3
            case 4: ranges.4
            default: ranges.5
            }
        }
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
