import NIOCore
import Testing
@testable import YKC

/// `BCDDigits` keeps up to 32 hex digits packed and anything else as text: both read, write,
/// compare and print exactly as the digits they hold.
@Suite("BCD digits")
struct BCDDigitsTests {
    @Test("read from bytes: packed up to 16 bytes, text beyond, short input zero-padded on the right")
    func read() {
        let sim: [UInt8] = [0x89, 0x86, 0x04, 0xD1, 0x17, 0x22, 0xD0, 0x34, 0x86, 0x06]
        #expect(BCDDigits(bytes: sim, byteCount: 10).digits == "898604D11722D0348606")
        let sixteen = [UInt8](0..<16).map { $0 &* 17 }
        #expect(BCDDigits(bytes: sixteen, byteCount: 16).digits == "00112233445566778899AABBCCDDEEFF")
        let seventeen = sixteen + [0xAB]
        #expect(BCDDigits(bytes: seventeen, byteCount: 17).digits == "00112233445566778899AABBCCDDEEFFAB")
        #expect(BCDDigits(bytes: [0x12], byteCount: 3).digits == "120000")
        #expect(BCDDigits(bytes: [UInt8](), byteCount: 0).digits == "")
        var buffer = ByteBuffer(bytes: sim)
        #expect(BCDDigits.read(from: &buffer, byteCount: 10)?.digits == "898604D11722D0348606")
        #expect(BCDDigits.read(from: &buffer, byteCount: 1) == nil)
    }

    @Test("text: padded, uppercased, equal to the same digits read from bytes; other text kept verbatim")
    func text() throws {
        let padded = try #require(BCDDigits("ab12", byteCount: 4))
        #expect(padded.digits == "0000AB12")
        #expect(padded == BCDDigits(bytes: [0x00, 0x00, 0xAB, 0x12], byteCount: 4))
        #expect(padded.hashValue == BCDDigits(bytes: [0x00, 0x00, 0xAB, 0x12], byteCount: 4).hashValue)
        #expect(BCDDigits("12345", byteCount: 2) == nil)
        #expect(BCDDigits("12G4", byteCount: 2) == nil)
        let odd: BCDDigits = "abc"
        #expect(odd.digits == "ABC")
        let other: BCDDigits = "12-x"
        #expect(other.digits == "12-X")
        #expect(other.description == "12-X")
        let long = String(repeating: "9", count: 40)
        #expect(BCDDigits(stringLiteral: long).digits == long)
        #expect(BCDDigits(stringLiteral: "00000000000000012345").decimalValue == 12345)
        #expect(BCDDigits(stringLiteral: "00000000000000A12345").decimalValue == nil)
    }

    @Test("write: exact width, left-padded or cut on the left, other characters as zero nibbles")
    func write() {
        func bytes(_ d: BCDDigits, _ n: Int) -> [UInt8] {
            var b = ByteBuffer()
            d.write(to: &b, byteCount: n)
            return Array(b.readableBytesView)
        }
        #expect(bytes("898604D11722D0348606", 10) == [0x89, 0x86, 0x04, 0xD1, 0x17, 0x22, 0xD0, 0x34, 0x86, 0x06])
        #expect(bytes("123", 3) == [0x00, 0x01, 0x23])
        #expect(bytes("ABCDEF", 2) == [0xCD, 0xEF])
        #expect(bytes("1x3", 2) == [0x01, 0x03])
        let long = BCDDigits(stringLiteral: String(repeating: "1", count: 34) + "23")
        #expect(bytes(long, 2) == [0x11, 0x23])
        #expect(bytes(long, 18) == [UInt8](repeating: 0x11, count: 17) + [0x23])
    }
}
