import Testing

@testable import PileGateCLI

@Suite("TextTable and Format: what people read")
struct TextTableTests {
    @Test("columns are padded to the widest cell, numbers right-aligned, the last column unpadded")
    func table() {
        var t = TextTable(["pile", "frames", "state"], rightAligned: [1], indent: "  ")
        t.add(["32010600019236", "7", "online"])
        t.add(["1", "12345", "x"])
        t.add(["short row"])
        let expected = [
            "  pile            frames  state",
            "  32010600019236       7  online",
            "  1                12345  x",
            "  short row               ",
        ]
        #expect(t.rendered == expected.joined(separator: "\n") + "\n")
    }

    @Test("an empty table is its header")
    func empty() {
        #expect(TextTable(["a", "bb"]).rendered == "a  bb\n")
    }

    @Test("rates, byte counts and durations")
    func format() {
        #expect(Format.rate(0) == "0")
        #expect(Format.rate(0.001) == "<0.01")
        #expect(Format.rate(0.25) == "0.25")
        #expect(Format.rate(3.5) == "3.5")
        #expect(Format.rate(120) == "120")
        #expect(Format.rate(1234) == "1.2k")
        #expect(Format.rate(2_500_000) == "2.5M")
        #expect(Format.rate(.nan) == "-")
        #expect(Format.bytes(512) == "512 B")
        #expect(Format.bytes(1536) == "1.5 KiB")
        #expect(Format.bytes(3 * 1024 * 1024) == "3.0 MiB")
        #expect(Format.duration(0.00085) == "850 µs")
        #expect(Format.duration(0.012) == "12 ms")
        #expect(Format.duration(3.4) == "3.4 s")
        #expect(Format.duration(125) == "2m05s")
        #expect(Format.duration(3720) == "1h02m")
        #expect(Format.duration(273_600) == "3d04h")
        #expect(Format.duration(.infinity) == "-")
        #expect(Format.lane("") == "base" && Format.lane("canary") == "canary")
    }
}
