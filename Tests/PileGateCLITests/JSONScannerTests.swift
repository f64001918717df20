import Testing

@testable import PileGateCLI

/// `JSONScanner` on every JSON form an envelope may carry, and on broken input: an error, never a
/// trap or a loop that does not end.
@Suite("JSONScanner")
struct JSONScannerTests {
    /// Walks `text` as one object: each key with its string value, or "<skipped>" for other values.
    static func members(_ text: String, maxDepth: Int = 64) throws -> [String: String] {
        var copy = text
        return try copy.withUTF8 { bytes -> [String: String] in
            var scanner = JSONScanner(bytes, maxDepth: maxDepth)
            var out: [String: String] = [:]
            try scanner.beginObject()
            while let key = try scanner.nextKey() {
                out[key] = try scanner.readStringIfString() ?? "<skipped>"
            }
            try scanner.end()
            return out
        }
    }

    static func failure(_ text: String, maxDepth: Int = 64) -> JSONScanner.Failure? {
        do {
            _ = try members(text, maxDepth: maxDepth)
            return nil
        } catch {
            return error as? JSONScanner.Failure
        }
    }

    @Test("nested objects and arrays are skipped whole; the keys after them are still found")
    func nested() throws {
        let text = #"{"a":{"b":[1,{"c":[[],{}]},"x"],"d":{}},"e":[[[["deep"]]]],"f":"after", "g" : [ ] }"#
        let m = try Self.members(text)
        #expect(m == ["a": "<skipped>", "e": "<skipped>", "f": "after", "g": "<skipped>"])
    }

    @Test("escapes: quote, backslash, slash, control letters and \\u, with a surrogate pair as one scalar")
    func escapes() throws {
        let text = #"{"s":"q\"b\\s\/n\nt\tr\rb\bf\f","u":"\u00e9\u4E2D","pair":"\ud83d\ude00!","raw":"中文é"}"#
        let m = try Self.members(text)
        #expect(m["s"] == "q\"b\\s/n\nt\tr\rb\u{08}f\u{0C}")
        #expect(m["u"] == "é中")
        #expect(m["pair"] == "😀!")
        #expect(m["raw"] == "中文é")
    }

    @Test("escapes in a key and in a skipped string are decoded or checked the same way")
    func escapedKeyAndSkipped() throws {
        let m = try Self.members(#"{"k\u0065y":"v","arr":["a\"]b", "\ud83d\ude00"]}"#)
        #expect(m == ["key": "v", "arr": "<skipped>"])
    }

    @Test("numbers: integers, negatives, fractions, exponents")
    func numbers() throws {
        for text in ["0", "-0", "12", "-3.25", "1e3", "1E+3", "2.5e-7", "-0.0e0", "123456789012345678901234567890"] {
            var copy = #"{"n":\#(text)}"#
            let value = try copy.withUTF8 { bytes -> Double in
                var s = JSONScanner(bytes)
                try s.beginObject()
                _ = try s.nextKey()
                let v = try s.readNumber()
                let after = try s.nextKey()
                #expect(after == nil)
                try s.end()
                return v
            }
            #expect(value == Double(text), "\(text)")
        }
        #expect(try Self.members(#"{"a":[1.5e10,-2,0.001],"b":true,"c":false,"d":null}"#).count == 4)
    }

    @Test("malformed numbers are errors", arguments: ["01", "-", "1.", ".5", "1e", "1e+", "+1", "1.2.3", "0x10", "1ee2", "--1"])
    func badNumbers(_ text: String) {
        #expect(Self.failure(#"{"n":\#(text)}"#) != nil)
    }

    @Test(
        "malformed input is an error",
        arguments: [
            "", " ", "[]", "\"s\"", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\" 1}", "{\"a\":1,}", "{,\"a\":1}", "{\"a\":1 \"b\":2}",
            "{\"a\":[1,]}", "{\"a\":[1 2]}", "{\"a\":{\"b\"}}", "{\"a\":tru}", "{\"a\":nul}", "{\"a\":True}", "{'a':1}",
            "{a:1}", "{\"a\":1}x", "{\"a\":1}{}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12G4\"}", "{\"a\":\"\\ud83d\"}",
            "{\"a\":\"\\ud83dx\"}", "{\"a\":\"\\ude00\"}", "{\"a\":\"\\ud83d\\u0041\"}", "{\"a\":\"tab\there\"}",
            "{\"a\":\"line\nbreak\"}", "{\"a\":[}", "{\"a\":{]}",
        ])
    func malformed(_ text: String) {
        #expect(Self.failure(text) != nil, "\(text.debugDescription)")
    }

    @Test("every truncation of a valid message is an error, never a trap")
    func truncations() throws {
        let text = #"{"type":"event","id":"e-1\u00e9","n":-1.5e3,"data":{"a":[true,false,null,"x\"y",{"k":"\ud83d\ude00"}]}}"#
        _ = try Self.members(text)
        let bytes = Array(text.utf8)
        for n in 0..<bytes.count {
            let prefix = String(decoding: bytes[0..<n], as: UTF8.self)
            // Cutting a multi-byte character leaves U+FFFD, which is still not a complete object.
            #expect(Self.failure(prefix) != nil, "prefix of \(n) bytes")
        }
    }

    @Test("nesting deeper than maxDepth is an error; at maxDepth it is read")
    func depth() throws {
        let ok = "{\"a\":" + String(repeating: "[", count: 8) + String(repeating: "]", count: 8) + "}"
        #expect(try Self.members(ok, maxDepth: 8)["a"] == "<skipped>")
        let deep = "{\"a\":" + String(repeating: "[", count: 9) + String(repeating: "]", count: 9) + "}"
        #expect(Self.failure(deep, maxDepth: 8) == .tooDeep(offset: 13))
        // Far deeper than the default: an error, not a stack overflow.
        let hostile = "{\"a\":" + String(repeating: "[", count: 100_000) + "}"
        #expect(Self.failure(hostile) == .tooDeep(offset: 69))
    }

    @Test("byte flips of a valid message end in a value or an error, never a trap")
    func mutations() {
        let bytes = Array(#"{"type":"event","id":"e1","receivedAt":"2026-01-02T03:04:05.123456Z","data":{"v":[1,2.5e3,"\u0041"]}}"#.utf8)
        var rng = SplitMix(seed: 42)
        for _ in 0..<5_000 {
            var copy = bytes
            for _ in 0..<Int(rng.next() % 3 + 1) {
                let i = Int(rng.next() % UInt64(copy.count))
                copy[i] = UInt8(truncatingIfNeeded: rng.next())
            }
            copy.withUnsafeBufferPointer { b in
                var s = JSONScanner(b)
                do {
                    try s.beginObject()
                    while try s.nextKey() != nil { try s.skipValue() }
                    try s.end()
                } catch {}
                #expect(s.offset <= b.count)
            }
        }
    }
}

/// A small deterministic generator, so a failing mutation can be replayed.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
