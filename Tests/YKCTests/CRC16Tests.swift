import NIOCore
import Testing

@testable import YKC

/// CRC-16/MODBUS as the facts define it (§1.1): poly 0x8005 reflected, init 0xFFFF, no final XOR,
/// covering sequence .. body and sent low byte first.
@Suite("CRC-16/MODBUS")
struct CRC16Tests {
    @Test("catalogue check value: \"123456789\" gives 0x4B37")
    func checkValue() {
        #expect(CRC16.compute(Array("123456789".utf8)) == 0x4B37)
        Array("123456789".utf8).withUnsafeBytes { #expect(CRC16.compute($0) == 0x4B37) }
    }

    @Test("the official 0x02 sample: covered bytes give 0x4CDA, sent as DA 4C")
    func officialLoginReplySample() {
        let covered = hex("00 00 00 02 55 03 14 12 78 23 05 00")
        #expect(CRC16.compute(covered) == 0x4CDA)
        let frame = makeFrame(code: 0x02, body: hex("55 03 14 12 78 23 05 00"), sequence: YKCSequence(0, 0))
        #expect(frame == hex("68 0C 00 00 00 02 55 03 14 12 78 23 05 00 DA 4C"))
    }

    @Test("the streaming form continues from a seed like the one-shot form")
    func seededContinuation() {
        let bytes = Array("123456789".utf8)
        let first = bytes[0..<4].withUnsafeBytes { CRC16.compute($0) }
        let whole = bytes[4...].withUnsafeBytes { CRC16.compute($0, seed: first) }
        #expect(whole == 0x4B37)
    }

    @Test("the CRC covers sequence, flag, type and body — not the start and length bytes")
    func coverage() {
        let frame = makeFrame(code: 0x09, body: hex("20 23 12 12 00 00 10"), sequence: YKCSequence(0x00, 0x07))
        let crc = CRC16.compute(frame[2..<(frame.count - 2)])
        #expect(frame[frame.count - 2] == UInt8(crc & 0xFF))
        #expect(frame[frame.count - 1] == UInt8(crc >> 8))
    }
}

/// CP56Time2a (docs/ykc/PROTOCOL-FACTS.md §1.3): ms-in-minute LE, minute, hour, day (+weekday), month, year − 2000.
@Suite("CP56Time2a")
struct CP56Time2aTests {
    @Test("the vendor document's worked example 98 B7 0E 11 10 03 14 is 2020-03-16 17:14:47.000")
    func workedExample() throws {
        var b = ByteBuffer(bytes: hex("98 B7 0E 11 10 03 14"))
        let t = try #require(CP56Time2a.read(from: &b))
        #expect([t.year, t.month, t.day, t.hour, t.minute, t.second, t.millisecond] == [2020, 3, 16, 17, 14, 47, 0])
        #expect(t.iso8601() == "2020-03-16T17:14:47.000+08:00")
        var out = ByteBuffer()
        t.write(to: &out)
        #expect(Array(out.readableBytesView) == hex("98 B7 0E 11 10 03 14"))
    }

    @Test("flag bits (IV, SU, weekday) are masked when reading and kept when re-encoding")
    func flagsMasked() throws {
        // JCPP's bill start time: day byte 0x6D = weekday 3, day 13.
        var b = ByteBuffer(bytes: hex("B0 36 84 91 6D 0C 17"))
        let t = try #require(CP56Time2a.read(from: &b))
        #expect(t.iso8601() == "2023-12-13T17:04:14.000+08:00")
        #expect(t.isInvalidFlagSet)
        #expect(t.rawHex == "B03684916D0C17")
    }

    @Test("an impossible time is shown as its 14 hex digits and parses back")
    func impossibleTime() throws {
        var b = ByteBuffer(bytes: hex("FF FF 3F 1F 1F 0F 7F"))
        let t = try #require(CP56Time2a.read(from: &b))
        #expect(!t.isValid)
        #expect(t.iso8601() == "FFFF3F1F1F0F7F")
        #expect(CP56Time2a(iso8601: "FFFF3F1F1F0F7F") == t)
    }

    @Test("ISO 8601 with another offset converts to Beijing wall time")
    func offsets() throws {
        let t = try #require(CP56Time2a(iso8601: "2020-03-16T09:14:47.000Z"))
        #expect(t.iso8601() == "2020-03-16T17:14:47.000+08:00")
    }
}
