import Foundation
import NIOCore
import Testing

@testable import NATS

@Suite("Headers, URLs, protocol encoding")
struct NATSHeadersTests {
    @Test("a header block round-trips with status, order and repeats")
    func roundTrip() throws {
        var headers = NATSHeaders(status: 404, statusDescription: "No Messages")
        headers.append("A", "1")
        headers.append("B", "two words")
        headers.append("A", "3")
        var buffer = ByteBuffer()
        let written = headers.write(to: &buffer)
        #expect(written == buffer.readableBytes)
        let parsed = try NATSHeaders.parse(buffer.readableBytesView)
        #expect(parsed == headers)
        #expect(parsed["A"] == "1")
        #expect(parsed.values(for: "A") == ["1", "3"])
        var replaced = parsed
        replaced["A"] = "9"
        #expect(replaced.values(for: "A") == ["9"])
    }

    @Test("headers that would break the block are refused")
    func invalidHeaders() {
        #expect(throws: NATSError.self) { try (["Bad\r\nName": "x"] as NATSHeaders).validate() }
        #expect(throws: NATSError.self) { try (["Name": "x\r\ny"] as NATSHeaders).validate() }
        #expect(throws: NATSError.self) { try (["Na:me": "x"] as NATSHeaders).validate() }
    }

    @Test("PUB and HPUB carry the sizes the server checks")
    func publishEncoding() {
        var buffer = ByteBuffer()
        ClientProtocol.writePublish(subject: "a.b", replyTo: "r", headers: nil, payload: ByteBuffer(string: "hello"), into: &buffer)
        #expect(String(buffer: buffer) == "PUB a.b r 5\r\nhello\r\n")
        buffer.clear()
        ClientProtocol.writePublish(subject: "a", replyTo: nil, headers: ["K": "V"], payload: ByteBuffer(string: "xy"), into: &buffer)
        // "NATS/1.0\r\n" (10) + "K: V\r\n" (6) + "\r\n" (2) = 18
        #expect(String(buffer: buffer) == "HPUB a 18 20\r\nNATS/1.0\r\nK: V\r\n\r\nxy\r\n")
    }

    @Test("subjects with whitespace are refused")
    func subjects() {
        #expect(throws: NATSError.self) { try ClientProtocol.validate(subject: "") }
        #expect(throws: NATSError.self) { try ClientProtocol.validate(subject: "a b") }
        #expect(throws: NATSError.self) { try ClientProtocol.validate(subject: "a\r\nPUB x 1") }
        #expect(throws: Never.self) { try ClientProtocol.validate(subject: "a.*.>") }
    }

    @Test("server URLs")
    func urls() throws {
        #expect(try NATSServerAddress("nats://127.0.0.1:4333") == NATSServerAddress(host: "127.0.0.1", port: 4333))
        #expect(try NATSServerAddress("tls://nats.example:4222").tls)
        #expect(try NATSServerAddress("localhost") == NATSServerAddress(host: "localhost", port: 4222))
        #expect(try NATSServerAddress("nats://[::1]:5000") == NATSServerAddress(host: "::1", port: 5000))
        let withUser = try NATSServerAddress("nats://u:p@h:1")
        #expect(withUser.userInfo?.user == "u" && withUser.userInfo?.password == "p")
        #expect(try NATSClientOptions(url: "nats://a:1,nats://b:2").servers.count == 2)
        #expect(throws: NATSError.self) { try NATSServerAddress("http://x:1") }
        #expect(throws: NATSError.self) { try NATSServerAddress("nats://x:notaport") }
        #expect(throws: NATSError.self) { try NATSServerAddress("nats://x:70000") }
    }

    @Test("reconnect backoff grows, is capped and jittered")
    func backoff() {
        let policy = NATSReconnectPolicy(initialDelay: .milliseconds(100), maxDelay: .seconds(2), jitter: 0.5)
        for attempt in 0..<12 {
            let delay = policy.delay(attempt: attempt)
            let base = min(2.0, 0.1 * pow(2.0, Double(attempt)))
            let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
            #expect(seconds <= base + 1e-6 && seconds >= base * 0.5 - 1e-6)
        }
        let delays = Set((0..<20).map { _ in policy.delay(attempt: 3) })
        #expect(delays.count > 1)
    }
}

