import Foundation
import NIOCore
import Testing

@testable import YKC

/// The writer puts bytes straight into the socket buffer; these tests hold that byte-level
/// path to the plain String forms and to what a JSON parser reads back.
@Suite("JSON writer")
struct JSONWriterTests {
    private func written(_ body: (inout JSONWriter) -> Void) -> String {
        var w = JSONWriter()
        body(&w)
        return w.string
    }

    @Test("plain ASCII is copied as is; quotes, backslashes, controls, Latin-1 and other scalars are escaped or UTF-8")
    func strings() throws {
        let cases: [(String, String)] = [
            ("32010600019236", #""32010600019236""#),
            ("", #""""#),
            ("a\"b\\c", #""a\"b\\c""#),
            ("line\nret\rtab\t", #""line\nret\rtab\t""#),
            ("\u{01}\u{1F}\u{7F}", #""\u0001\u001F\u007F""#),
            ("\u{E9}\u{FF}", #""\u00E9\u00FF""#),
            ("中国移动", "\"中国移动\""),
            ("x\"中", #""x\"中""#),
        ]
        for (input, expected) in cases {
            let text = written { $0.string(input) }
            #expect(text == expected, "for \(input.debugDescription)")
            let back = try JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed) as? String
            #expect(back == input, "round trip of \(input.debugDescription)")
        }
    }

    @Test("integers and decimals are the same text as their String forms")
    func numbers() {
        let ints: [Int64] = [0, 7, 10, 99, 100, -1, -10, 1_234_567_890, .max, .min]
        for v in ints {
            #expect(written { $0.int(v) } == String(v))
        }
        #expect(written { $0.int(UInt64.max) } == String(UInt64.max))
        let decimals: [YKCDecimal] = [
            .init(units: 0, scale: 2), .init(units: 5, scale: 1), .init(units: -5, scale: 1),
            .init(units: 123_456, scale: 4), .init(units: -3432, scale: 1), .init(units: 25, scale: 0),
            .init(units: 1, scale: 5), .init(units: -400_000, scale: 3), .init(units: 7, scale: -2),
        ]
        for d in decimals {
            #expect(written { $0.decimal(d) } == d.description, "units \(d.units) scale \(d.scale)")
        }
    }

    @Test("times are the same text as iso8601, for both offset signs; invalid times stay raw hex")
    func times() throws {
        var buf = ByteBuffer(bytes: [0x98, 0xB7, 0x0E, 0x11, 0x10, 0x03, 0x14])
        let t = try #require(CP56Time2a.read(from: &buf))
        for offset in [8 * 3600, 0, -(5 * 3600 + 30 * 60)] {
            var w = JSONWriter(utcOffsetSeconds: offset)
            w.time(t)
            #expect(w.string == "\"" + t.iso8601(utcOffsetSeconds: offset) + "\"")
        }
        var bad = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        let invalid = try #require(CP56Time2a.read(from: &bad))
        #expect(written { $0.time(invalid) } == "\"" + invalid.iso8601() + "\"")
    }

    @Test("separators: values in objects and arrays get exactly one comma between them")
    func structure() throws {
        let text = written { w in
            w.beginObject()
            w.field("a", 1)
            w.field("b", "x")
            w.key("c")
            w.beginArray()
            w.decimal(.init(units: 15, scale: 1))
            w.int(-2)
            w.bool(true)
            w.null()
            w.endArray()
            w.endObject()
        }
        #expect(text == #"{"a":1,"b":"x","c":[1.5,-2,true,null]}"#)
    }
}

@Suite("JSON writer: gateway timestamps and ids")
struct JSONWriterTimestampTests {
    @Test("UTC timestamps with microseconds match Foundation's ISO 8601, before and after 1970")
    func timestamps() throws {
        let samples: [Int64] = [0, 1, 999_999, 1_795_000_000_123_456, 1_764_500_805_629_001, -1, -86_400_000_001, 951_782_400_000_000]
        for micros in samples {
            var w = JSONWriter()
            w.utcTimestamp(microsecondsSince1970: micros)
            let text = w.string
            let date = Date(timeIntervalSince1970: TimeInterval(micros.quotientAndRemainder(dividingBy: 1_000_000).quotient))
            let whole = date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: false).timeZone(separator: .omitted))
            // Whole seconds from Foundation, the fraction from the integer itself.
            var frac = micros % 1_000_000
            var secondsText = whole.dropLast()  // "Z"
            if frac < 0 {
                frac += 1_000_000
                let earlier = Date(timeIntervalSince1970: TimeInterval(micros / 1_000_000 - 1))
                secondsText = earlier.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: false).timeZone(separator: .omitted)).dropLast()
            }
            let fracText = String(frac)
            let expected = "\"" + secondsText + "." + String(repeating: "0", count: 6 - fracText.count) + fracText + "Z\""
            #expect(text == expected, "micros \(micros)")
        }
    }

    @Test("pile ids are their 14 hex digits, as PileID.description")
    func pileIds() throws {
        for text in ["32010600019236", "00000000000001", "ABCDEF01234567"] {
            let id = try #require(PileID(text))
            var w = JSONWriter()
            w.pileId(id)
            #expect(w.string == "\"" + id.description + "\"")
        }
    }
}
