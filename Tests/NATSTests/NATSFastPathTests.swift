import Foundation
import NIOCore
import Testing

@testable import NATS

/// The per-message parsers that work on bytes (header blocks, JetStream ack subjects, PubAcks)
/// read what the server writes the same way the general decoders did, and refuse what they refused.
@Suite("Per-message parsers on bytes")
struct NATSFastPathTests {
    private func headers(_ text: String) throws -> NATSHeaders {
        try NATSHeaders.parse(ByteBuffer(string: text).readableBytesView)
    }

    @Test("header blocks: status lines, values with colons and spaces, empty values, repeats")
    func headerBlocks() throws {
        let noMessages = try headers("NATS/1.0 404 No Messages\r\n\r\n")
        #expect(noMessages.status == 404 && noMessages.statusDescription == "No Messages" && noMessages.fields.isEmpty)
        let bare = try headers("NATS/1.0 503\r\n\r\n")
        #expect(bare.status == 503 && bare.statusDescription == "")
        let fields = try headers("NATS/1.0\r\nNats-Msg-Id: bill:1:2\r\nEmpty:\r\nLane:   canary a\r\nEmpty: 2\r\n\r\n")
        #expect(fields.status == nil)
        #expect(fields["Nats-Msg-Id"] == "bill:1:2")
        #expect(fields.values(for: "Empty") == ["", "2"])
        #expect(fields["Lane"] == "canary a")
        #expect(fields.fields.map(\.name) == ["Nats-Msg-Id", "Empty", "Lane", "Empty"])
        let utf8 = try headers("NATS/1.0\r\nPile: 桩\r\n\r\n")
        #expect(utf8["Pile"] == "桩")
    }

    @Test("header blocks that are not NATS/1.0, lack a colon, carry a bad status or bad UTF-8 are refused")
    func badHeaderBlocks() {
        #expect(throws: NATSError.self) { try headers("HTTP/1.1 200\r\n\r\n") }
        #expect(throws: NATSError.self) { try headers("NATS/1.") }
        #expect(throws: NATSError.self) { try headers("NATS/1.0\r\nNoColon\r\n\r\n") }
        #expect(throws: NATSError.self) { try headers("NATS/1.0 4x4 Bad\r\n\r\n") }
        var invalid = ByteBuffer(string: "NATS/1.0\r\nK: ")
        invalid.writeBytes([0xFF, 0xFE])
        invalid.writeString("\r\n\r\n")
        #expect(throws: NATSError.self) { try NATSHeaders.parse(invalid.readableBytesView) }
    }

    @Test("ack subjects in the 2.x and the domain form; anything else is not a JetStream message")
    func ackSubjects() throws {
        let plain = try #require(JetStreamMessage.Metadata(replySubject: "$JS.ACK.EVENTS.billing.2.917.15.1764590000123456789.42"))
        #expect(plain.stream == "EVENTS" && plain.consumer == "billing")
        #expect(plain.deliveryCount == 2 && plain.streamSequence == 917 && plain.consumerSequence == 15 && plain.pending == 42)
        #expect(abs(plain.timestamp.timeIntervalSince1970 - 1_764_590_000.123456789) < 1e-3)
        let domain = try #require(
            JetStreamMessage.Metadata(replySubject: "$JS.ACK.hub.ACCHASH.EVENTS.billing.1.5.6.1764590000000000000.0.rnd"))
        #expect(domain.stream == "EVENTS" && domain.streamSequence == 5 && domain.consumerSequence == 6 && domain.pending == 0)
        for bad in [
            "", "$JS.ACK", "$JS.ACK.S.C.1.2.3.4", "$JS.NAK.S.C.1.2.3.4.5", "$JS.ACK.S.C.x.2.3.4.5", "_INBOX.abc",
            "$JS.ACK.S.C.1.2.3.4.5.6", "$JS.ACK.S.C.1.2.3.4.-5",
        ] {
            #expect(JetStreamMessage.Metadata(replySubject: bad) == nil, "\(bad)")
        }
    }

    @Test("PubAcks as the server writes them are read without JSONDecoder; other shapes are left to it")
    func pubAcks() throws {
        func flat(_ text: String) -> PubAck? { PubAck.flat(ByteBuffer(string: text).readableBytesView) }
        #expect(flat(#"{"stream":"CL_EVENTS","seq":9223372036854775807}"#) == PubAck(stream: "CL_EVENTS", sequence: 9_223_372_036_854_775_807, duplicate: false, domain: nil))
        #expect(flat(#"{"stream":"S","seq":7,"duplicate":true}"#) == PubAck(stream: "S", sequence: 7, duplicate: true, domain: nil))
        #expect(flat(#" { "stream" : "S" , "domain":"hub", "seq" : 3 , "duplicate" : false } "#)
            == PubAck(stream: "S", sequence: 3, duplicate: false, domain: "hub"))
        // Left to the full decoder: errors, escapes, missing fields, trailing bytes, other value kinds.
        for text in [
            #"{"error":{"code":503,"err_code":10077,"description":"no stream"}}"#, #"{"stream":"S\u0041","seq":1}"#,
            #"{"stream":"S"}"#, #"{"seq":1}"#, #"{"stream":"S","seq":1}x"#, #"{"stream":"S","seq":-1}"#,
            #"{"stream":"S","seq":1,"x":null}"#, "", "{}", #"{"stream":"S","seq":1,"#, #"{"stream":"S","seq":18446744073709551615}"#,
        ] {
            #expect(flat(text) == nil, "\(text)")
        }
        // The general path still reads what the flat one declines.
        let escaped = NATSMessage(subject: "_INBOX.x", sid: 1, replyTo: nil, headers: nil, payload: ByteBuffer(string: #"{"stream":"S\u0041","seq":1}"#))
        #expect(try JetStream.decode(PubAck.self, from: escaped).stream == "SA")
        let twentyDigits = NATSMessage(subject: "_INBOX.x", sid: 1, replyTo: nil, headers: nil, payload: ByteBuffer(string: #"{"stream":"S","seq":18446744073709551615}"#))
        #expect(try JetStream.decode(PubAck.self, from: twentyDigits).sequence == .max)
    }

    @Test("verbs are matched on bytes in any case; unknown and overlong verbs are refused")
    func verbs() {
        func verb(_ text: String) -> ServerOperationDecoder.Verb {
            let buffer = ByteBuffer(string: text)
            return ServerOperationDecoder.verb(of: buffer.readableBytesView[...])
        }
        #expect(verb("MSG a 1 0") == .msg && verb("hmsg a 1 2 2") == .hmsg && verb("Ping") == .ping)
        #expect(verb("PONG") == .pong && verb("+ok") == .ok && verb("-ERR 'x'") == .err && verb("INFO {}") == .info)
        #expect(verb("MSGS a") == .unknown && verb("PINGS") == .unknown && verb("") == .unknown && verb("INF") == .unknown)
        #expect(verb("PING\t") == .ping)
    }
}
