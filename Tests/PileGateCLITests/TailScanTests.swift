import Testing

@testable import PileGateCLI

@Suite("TailScan: what tail reads from a gateway message")
struct TailScanTests {
    static func scan(_ text: String) -> TailScan {
        var copy = text
        return copy.withUTF8 { TailScan.parse($0) }
    }

    static func micros(_ text: String) -> Int64? {
        var copy = text
        return copy.withUTF8 { TailScan.parseTimestamp($0) }
    }

    @Test("an event: its id and receivedAt, whatever the data holds and however it is spaced")
    func event() {
        let s = Self.scan(
            #"{ "data" : {"type":"error","id":"inner","receivedAt":"1970-01-01T00:00:00Z"}, "type" : "event", "#
                + #""id" : "e-\"7\"", "receivedAt" : "2026-01-02T03:04:05.250Z" }"#)
        #expect(s.kind == .event)
        #expect(s.id == "e-\"7\"")
        #expect(s.receivedAtMicros == 1_767_323_045_250_000)
    }

    @Test("subscribed, error and other types; anything that is not one JSON object is other")
    func kinds() {
        #expect(Self.scan(#"{"type":"subscribed","service":"s"}"#).kind == .subscribed)
        #expect(Self.scan(#"{"type":"error","error":"bad_request","message":"m"}"#).kind == .error)
        #expect(Self.scan(#"{"type":"pong"}"#).kind == .other)
        #expect(Self.scan(#"{"type":7}"#).kind == .other)
        #expect(Self.scan(#"{"type":"event","id":"x""#).kind == .other)
        #expect(Self.scan("not json").kind == .other)
        #expect(Self.scan("").kind == .other)
        let noTime = Self.scan(#"{"type":"event","id":"x","receivedAt":"yesterday"}"#)
        #expect(noTime.kind == .event && noTime.id == "x" && noTime.receivedAtMicros == nil)
    }

    @Test("timestamps: Z, offsets with and without a colon, fractions of any length")
    func timestamps() {
        #expect(Self.micros("1970-01-01T00:00:00Z") == 0)
        #expect(Self.micros("2000-02-29T12:00:00.5Z") == 951_825_600_500_000)
        #expect(Self.micros("2026-01-02T11:04:05+08:00") == 1_767_323_045_000_000)
        #expect(Self.micros("2026-01-02T02:04:05-0100") == 1_767_323_045_000_000)
        #expect(Self.micros("2026-01-02T03:04:05.123456789Z") == 1_767_323_045_123_456)
        for bad in ["", "2026-01-02", "2026-13-02T03:04:05Z", "2026-01-02T03:04:05", "2026-01-02 03:04:05Z", "2026-01-02T03:04:05Q"] {
            #expect(Self.micros(bad) == nil, "\(bad)")
        }
    }
}
