import Foundation
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@testable import NATS

@Suite("Server operation decoder")
struct ServerOperationDecoderTests {
    static let info = #"INFO {"server_id":"S1","version":"2.9.10","headers":true,"max_payload":1048576,"jetstream":true,"client_id":7}"#

    /// A stream with one of every operation, including payloads holding CRLF and an empty payload.
    static let stream =
        info + "\r\n"
        + "PING\r\nPONG\r\n+OK\r\n-ERR 'Slow Consumer'\r\n"
        + "MSG a.b 12 5\r\nhello\r\n"
        + "MSG a.b 12 reply.to 4\r\nx\r\ny\r\n"
        + "MSG empty 3 0\r\n\r\n"
        + "HMSG h.s 9 _INBOX.x.1 38 41\r\nNATS/1.0\r\nNats-Msg-Id: m1\r\nK: v: w\r\n\r\nabc\r\n"
        + "HMSG _INBOX.x.2 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
        + "HMSG s 2 32 32\r\nNATS/1.0 408 Request Timeout\r\n\r\n\r\n"

    static func expected() throws -> [ServerOperation] {
        var headers = NATSHeaders()
        headers.append("Nats-Msg-Id", "m1")
        headers.append("K", "v: w")
        return [
            .info(try JSONDecoder().decode(ServerInfo.self, from: Data(info.dropFirst(5).utf8))),
            .ping, .pong, .ok, .error("Slow Consumer"),
            .message(NATSMessage(subject: "a.b", sid: 12, replyTo: nil, headers: nil, payload: ByteBuffer(string: "hello"))),
            .message(NATSMessage(subject: "a.b", sid: 12, replyTo: "reply.to", headers: nil, payload: ByteBuffer(string: "x\r\ny"))),
            .message(NATSMessage(subject: "empty", sid: 3, replyTo: nil, headers: nil, payload: ByteBuffer())),
            .message(NATSMessage(subject: "h.s", sid: 9, replyTo: "_INBOX.x.1", headers: headers, payload: ByteBuffer(string: "abc"))),
            .message(NATSMessage(subject: "_INBOX.x.2", sid: 1, replyTo: nil, headers: NATSHeaders(status: 503), payload: ByteBuffer())),
            .message(NATSMessage(subject: "s", sid: 2, replyTo: nil, headers: NATSHeaders(status: 408, statusDescription: "Request Timeout"), payload: ByteBuffer())),
        ]
    }

    static func decodeAll(_ chunks: [ByteBuffer]) throws -> [ServerOperation] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(ServerOperationDecoder()))
        var out: [ServerOperation] = []
        for chunk in chunks {
            try channel.writeInbound(chunk)
            while let operation = try channel.readInbound(as: ServerOperation.self) { out.append(operation) }
        }
        _ = try channel.finish()
        return out
    }

    @Test("every two-way split of the stream decodes to the same operations")
    func everySplit() throws {
        let bytes = Array(Self.stream.utf8)
        let expected = try Self.expected()
        #expect(try Self.decodeAll([ByteBuffer(bytes: bytes)]) == expected)
        for split in 1..<bytes.count {
            let chunks = [ByteBuffer(bytes: bytes[..<split]), ByteBuffer(bytes: bytes[split...])]
            #expect(try Self.decodeAll(chunks) == expected, "split at \(split)")
        }
    }

    @Test("every three-way split around the header message decodes the same")
    func threeWaySplits() throws {
        let text = "HMSG h.s 9 _INBOX.x.1 38 41\r\nNATS/1.0\r\nNats-Msg-Id: m1\r\nK: v: w\r\n\r\nabc\r\nPING\r\n"
        let bytes = Array(text.utf8)
        let whole = try Self.decodeAll([ByteBuffer(bytes: bytes)])
        #expect(whole.count == 2)
        for i in 1..<bytes.count {
            for j in (i + 1)..<bytes.count {
                let chunks = [ByteBuffer(bytes: bytes[..<i]), ByteBuffer(bytes: bytes[i..<j]), ByteBuffer(bytes: bytes[j...])]
                #expect(try Self.decodeAll(chunks) == whole)
            }
        }
    }

    @Test("NIO's decoder verifier: drip feed, batches, one operation per buffer")
    func verifier() throws {
        let expected = try Self.expected()
        // One input per operation so the verifier can pair them.
        let parts = [
            Self.info + "\r\n", "PING\r\n", "PONG\r\n", "+OK\r\n", "-ERR 'Slow Consumer'\r\n",
            "MSG a.b 12 5\r\nhello\r\n", "MSG a.b 12 reply.to 4\r\nx\r\ny\r\n", "MSG empty 3 0\r\n\r\n",
            "HMSG h.s 9 _INBOX.x.1 38 41\r\nNATS/1.0\r\nNats-Msg-Id: m1\r\nK: v: w\r\n\r\nabc\r\n",
            "HMSG _INBOX.x.2 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
            "HMSG s 2 32 32\r\nNATS/1.0 408 Request Timeout\r\n\r\n\r\n",
        ]
        let pairs = zip(parts, expected).map { ($0.0, [$0.1]) }
        try ByteToMessageDecoderVerifier.verifyDecoder(stringInputOutputPairs: pairs) { ServerOperationDecoder() }
    }

    @Test("bad input is a protocol violation, bounded")
    func badInput() throws {
        let cases = [
            "BOGUS\r\n",
            "MSG a 1\r\n",  // too few fields
            "MSG a x 3\r\nabc\r\n",  // sid not a number
            "MSG a 1 3\r\nabcXY",  // payload not followed by CRLF
            "HMSG a 1 50 10\r\n",  // header larger than total
            "MSG a 1 999999999999\r\n",  // beyond max payload
            "INFO {not json}\r\n",
        ]
        for text in cases {
            #expect(throws: (any Error).self, "\(text)") { try Self.decodeAll([ByteBuffer(string: text)]) }
        }
        // A control line without CRLF may not grow beyond its bound.
        let decoder = ServerOperationDecoder(maxControlLine: 64)
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(decoder))
        #expect(throws: NATSError.self) { try channel.writeInbound(ByteBuffer(string: String(repeating: "x", count: 100))) }
    }

    @Test("verbs are case-insensitive and tabs separate fields")
    func caseAndTabs() throws {
        let ops = try Self.decodeAll([ByteBuffer(string: "ping\r\nmsg\ta\t5\t2\r\nhi\r\n")])
        #expect(ops == [.ping, .message(NATSMessage(subject: "a", sid: 5, replyTo: nil, headers: nil, payload: ByteBuffer(string: "hi")))])
    }
}

