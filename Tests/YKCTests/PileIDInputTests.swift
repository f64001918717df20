import Testing
@testable import YKC

@Suite("PileID(input:): the one rule for pile ids people and backends type")
struct PileIDInputTests {
    @Test("1-14 decimal digits, left-padded; exactly 14 hex digits", arguments: [
        ("1", "00000000000001"), ("32010600019236", "32010600019236"), ("00000000000000", "00000000000000"),
        ("3201060001923A", "3201060001923A"), ("abcdef01234567", "ABCDEF01234567"),
    ])
    func accepted(_ text: String, _ id: String) {
        #expect(PileID(input: text)?.description == id)
    }

    @Test("everything else is refused", arguments: [
        "", "abc", "123A", "320106000192361", "3201060001923G", " 1", "1 ", "-1", "+1", "1.0", "3201060001923６",
    ])
    func refused(_ text: String) {
        #expect(PileID(input: text) == nil)
    }

    @Test("backend JSON uses the same rule for strings and numbers")
    func json() throws {
        let ok = try JSONValue.parse(#"{"a":"1","b":32010600019236}"#)
        #expect(try JSONField.pileId(ok["a"], "a").description == "00000000000001")
        #expect(try JSONField.pileId(ok["b"], "b").description == "32010600019236")
        let bad = try JSONValue.parse(#"{"a":"abc","b":-1,"c":123456789012345}"#)
        for key in ["a", "b", "c"] {
            #expect(throws: YKCJSONError.self) { try JSONField.pileId(bad[key], key) }
        }
    }
}
