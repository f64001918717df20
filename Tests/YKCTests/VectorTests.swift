import NIOCore
import Testing

@testable import YKC

/// Every example frame of `vectors.tsv` (JCPP README, SPEC PDF, SPEC-MD) against the facts:
/// CRC verdict, byte order, typed decoding, and byte-exact re-encoding.
@Suite("Example frames (vectors.tsv)")
struct VectorTests {
    /// Frames whose CRC verifies but whose body does not fit the type's layout (docs/ykc/PROTOCOL-FACTS.md §7, §8):
    /// JCPP's 0x92 written with a 4-byte field (11-byte body), JCPP's "0x40" row that carries type
    /// byte 0x06, and JCPP's 0x25 with a 45-byte body instead of 31.
    static func expectsLengthMismatch(_ row: VectorRow) -> Bool {
        guard let length = YKCMessageInfo.of(code: row.code)?.bodyLength else { return false }
        return Int(row.bytes[1]) - 4 != length
    }

    @Test("the fixture holds the 48 rows of the research note")
    func rowCount() {
        #expect(VectorRow.all.count == 48)
        #expect(VectorRow.all.filter(\.crcValid).count == 28)
        let rawRows = VectorRow.all.filter { $0.crcValid && $0.lengthConsistent && Self.expectsLengthMismatch($0) }
        #expect(Set(rawRows.map(\.code)) == [0x92, 0x06, 0x25])
    }

    @Test("CRC-valid frames parse, report their CRC byte order and re-encode low-first",
          arguments: VectorRow.all.filter { $0.crcValid && $0.lengthConsistent })
    func validFrame(_ row: VectorRow) throws {
        let events = parseAll(row.bytes)
        try #require(events.count == 1, "events: \(events)")
        guard case .frame(let frame) = events[0] else {
            Issue.record("expected a frame, got \(events[0])")
            return
        }
        #expect(frame.crcOrder == row.expectedOrder)
        #expect(frame.code == row.code)
        #expect(frame.sequence.description == hexString(row.bytes[2..<4]))
        let message = YKCMessage.decode(frame)
        if Self.expectsLengthMismatch(row) {
            guard case .lengthMismatch = message.rawReason else {
                Issue.record("expected .raw lengthMismatch, got \(message.name) \(message.json)")
                return
            }
        } else {
            #expect(message.rawReason == nil, "decoded to raw: \(message.json)")
            #expect(message.code == row.code)
            #expect(message.name == YKCMessageInfo.of(code: row.code)?.name)
        }
        #expect(message.frame(sequence: frame.sequence).bytes == normalisingCRC(row.bytes))
        #expect(frame.bytes == normalisingCRC(row.bytes))
    }

    @Test("frames marked NO are rejected with a CRC mismatch naming both CRCs",
          arguments: VectorRow.all.filter { !$0.crcValid })
    func rejectedFrame(_ row: VectorRow) throws {
        let events = parseAll(row.bytes)
        guard case .error(.crcMismatch(let wire, let computed)) = events.first else {
            Issue.record("expected crcMismatch first, got \(events)")
            return
        }
        // With a wrong length byte the parser reads the CRC at the claimed position instead.
        if row.lengthConsistent {
            #expect(YKCFrameReport.lowFirstHex(wire) == row.crcOnWire)
            #expect(YKCFrameReport.lowFirstHex(computed) == row.crcComputedLowFirst)
        }
        #expect(!events.contains { if case .frame = $0 { true } else { false } })
    }

    @Test("a wrong length byte makes the CRC fail under the length it claims; corrected, the row verifies",
          arguments: VectorRow.all.filter { !$0.lengthConsistent })
    func wrongLengthByte(_ row: VectorRow) throws {
        let events = parseAll(row.bytes)
        guard case .error(.crcMismatch) = events.first else {
            Issue.record("expected crcMismatch first, got \(events)")
            return
        }
        #expect(!events.contains { if case .frame = $0 { true } else { false } })

        var fixed = row.bytes
        fixed[1] = UInt8(fixed.count - 4)
        let fixedEvents = parseAll(fixed)
        if row.crcValid {
            guard case .frame(let frame) = fixedEvents.first else {
                Issue.record("corrected frame should parse: \(fixedEvents)")
                return
            }
            #expect(fixedEvents.count == 1)
            #expect(frame.crcOrder == row.expectedOrder)
            let message = YKCMessage.decode(frame)
            #expect(message.rawReason == nil, "decoded to raw: \(message.json)")
        } else {
            guard case .error(.crcMismatch) = fixedEvents.first else {
                Issue.record("row marked NO should still fail: \(fixedEvents)")
                return
            }
        }
    }

    @Test("all valid frames back to back in one buffer parse in order")
    func backToBack() {
        let rows = VectorRow.all.filter { $0.crcValid && $0.lengthConsistent }
        let events = parseAll(rows.flatMap(\.bytes))
        let frames = events.compactMap { if case .frame(let f) = $0 { f } else { nil } }
        #expect(frames.count == rows.count)
        #expect(frames.map(\.bytes) == rows.map { normalisingCRC($0.bytes) })
        #expect(events.count == frames.count)
    }
}
