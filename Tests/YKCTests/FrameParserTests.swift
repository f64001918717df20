import NIOCore
import Testing

@testable import YKC

/// The stream parser (docs/ykc/PROTOCOL-FACTS.md §1.5): reassembly across reads, resynchronisation after garbage and
/// bad candidates, and progress on any input. Randomised with fixed seeds so failures reproduce.
@Suite("YKCFrameParser")
struct FrameParserTests {
    /// A random valid frame: any code, body 0…251 bytes (weighted to small), plain.
    static func randomFrame(_ rng: inout SeededRandom) -> [UInt8] {
        let length = Bool.random(using: &rng) ? Int.random(in: 0...40, using: &rng) : Int.random(in: 0...251, using: &rng)
        return makeFrame(
            code: UInt8.random(in: 0...255, using: &rng), body: rng.bytes(length),
            sequence: YKCSequence(UInt8.random(in: 0...255, using: &rng), UInt8.random(in: 0...255, using: &rng)))
    }

    /// Feeds `stream` in random chunks and collects every event, then drains as at end of stream.
    static func feedInChunks(_ stream: [UInt8], _ rng: inout SeededRandom, maxChunk: Int = 64) -> (
        events: [YKCParseEvent], counters: YKCFrameCounters
    ) {
        var parser = YKCFrameParser()
        var buffer = ByteBuffer()
        var events: [YKCParseEvent] = []
        var i = 0
        while i < stream.count {
            let n = min(Int.random(in: 1...maxChunk, using: &rng), stream.count - i)
            buffer.writeBytes(stream[i..<(i + n)])
            i += n
            while let e = parser.next(&buffer) { events.append(e) }
            // Between reads at most one partial frame is left unread.
            #expect(buffer.readableBytes < YKCFrameParser.maximumFrameSize)
            buffer.discardReadBytes()
        }
        while let e = parser.nextAtEnd(&buffer) { events.append(e) }
        #expect(buffer.readableBytes == 0)
        return (events, parser.counters)
    }

    static func frames(_ events: [YKCParseEvent]) -> [[UInt8]] {
        events.compactMap { if case .frame(let f) = $0 { f.bytes } else { nil } }
    }

    @Test("valid frames split at random points, between garbage without 0x68, come out exactly and in order",
          arguments: 0..<20)
    func splitFramesWithCleanGarbage(seed: Int) {
        var rng = SeededRandom(seed: 0xF00D + UInt64(seed))
        var stream: [UInt8] = []
        var expected: [[UInt8]] = []
        var garbage = 0
        for _ in 0..<Int.random(in: 1...30, using: &rng) {
            if Bool.random(using: &rng) {
                let g = (0..<Int.random(in: 1...50, using: &rng)).map { _ in
                    var b = UInt8.random(in: 0...254, using: &rng)
                    if b >= 0x68 { b += 1 }  // every value but 0x68
                    return b
                }
                stream += g
                garbage += g.count
            }
            let f = Self.randomFrame(&rng)
            stream += f
            expected.append(f)
        }
        let (events, counters) = Self.feedInChunks(stream, &rng)
        #expect(Self.frames(events) == expected)
        var skipped = 0
        for e in events {
            switch e {
            case .frame: continue
            case .error(.garbage(let n)): skipped += n
            case .error(let other): Issue.record("unexpected \(other)")
            }
        }
        #expect(skipped == garbage)
        #expect(counters.garbageBytes == garbage)
        #expect(counters.frames == expected.count)
        #expect(counters.crcMismatch == 0)
    }

    @Test("with arbitrary garbage (0x68 included) every valid frame is still found, in order", arguments: 0..<20)
    func framesSurviveArbitraryGarbage(seed: Int) {
        var rng = SeededRandom(seed: 0xBAD0 + UInt64(seed))
        var stream: [UInt8] = []
        var expected: [[UInt8]] = []
        for _ in 0..<Int.random(in: 1...20, using: &rng) {
            var g = rng.bytes(Int.random(in: 0...80, using: &rng))
            // Plant false starts, some with plausible length and flag bytes.
            for _ in 0..<Int.random(in: 0...3, using: &rng) where !g.isEmpty {
                let at = Int.random(in: 0..<g.count, using: &rng)
                g[at] = 0x68
                if at + 4 < g.count { g[at + 4] = 0 }
            }
            stream += g
            let f = Self.randomFrame(&rng)
            stream += f
            expected.append(f)
        }
        stream += rng.bytes(Int.random(in: 0...40, using: &rng))
        let (events, _) = Self.feedInChunks(stream, &rng)
        let found = Self.frames(events)
        // `expected` must be a subsequence of `found`; anything extra passed a CRC by chance.
        var j = 0
        for f in found where j < expected.count && f == expected[j] { j += 1 }
        #expect(j == expected.count, "found \(j) of \(expected.count) frames")
        #expect(found.count - expected.count <= 1, "\(found.count - expected.count) false positives")
    }

    @Test("random bytes never crash the parser and every call makes progress", arguments: 0..<10)
    func randomBytesMakeProgress(seed: Int) {
        var rng = SeededRandom(seed: 0xC0FFEE + UInt64(seed))
        // Bias towards bytes that look like frame headers.
        let bytes = (0..<4000).map { _ in
            Int.random(in: 0..<8, using: &rng) == 0 ? 0x68 : UInt8.random(in: 0...255, using: &rng)
        }
        var parser = YKCFrameParser()
        var buffer = ByteBuffer(bytes: bytes)
        var steps = 0
        while buffer.readableBytes > 0 {
            let before = buffer.readableBytes
            let event = parser.next(&buffer)
            if event == nil {
                #expect(buffer.readableBytes == before)
                #expect(before < YKCFrameParser.maximumFrameSize)
                _ = parser.nextAtEnd(&buffer)
            }
            #expect(buffer.readableBytes < before)
            steps += 1
            if steps > bytes.count * 2 { Issue.record("no progress"); break }
        }
    }

    @Test("a bad length byte, a bad encryption flag and a CRC mismatch each drop one byte and resync")
    func badCandidatesResync() {
        let good = makeFrame(code: 0x03, body: hex("32 01 02 00 00 00 01 01 00"))
        var bad = good
        bad[bad.count - 1] ^= 0xFF
        let events = parseAll([0x68, 0x02] + [0x68, 0x0D, 0, 0, 0x07] + bad + good)
        guard case .error(.invalidLength(2)) = events.first else {
            Issue.record("\(events)")
            return
        }
        #expect(events.contains(.error(.invalidEncryptionFlag(0x07))))
        #expect(events.contains { if case .error(.crcMismatch) = $0 { true } else { false } })
        #expect(Self.frames(events) == [good])
    }

    @Test("at end of stream an incomplete frame is reported as truncated and frames behind a false start are found")
    func truncatedAtEnd() {
        let good = makeFrame(code: 0x03, body: hex("32 01 02 00 00 00 01 01 00"))
        let events = parseAll([0x68, 0xF0, 0x00, 0x00, 0x00] + good)
        #expect(events == [
            .error(.truncated(have: 5, need: 0xF0 + 4)),
            .frame(YKCFrame(sequence: YKCSequence(0, 1), code: 0x03, body: ByteBuffer(bytes: good[6..<(good.count - 2)]))),
        ])
        #expect(parseAll(Array(good.dropLast())) .first == .error(.truncated(have: good.count - 1, need: good.count)))
        // A frame cut off at the end is one truncated frame, not also garbage (issue 14.16).
        var parser = YKCFrameParser()
        var cut = ByteBuffer(bytes: good + Array(good.dropLast(3)))
        var cutEvents: [YKCParseEvent] = []
        while let e = parser.nextAtEnd(&cut) { cutEvents.append(e) }
        #expect(cutEvents.count == 2)
        #expect(cutEvents.last == YKCParseEvent.error(.truncated(have: good.count - 3, need: good.count)))
        #expect(parser.counters.truncated == 1 && parser.counters.garbageRuns == 0 && parser.counters.garbageBytes == 0)
    }

    @Test("both CRC byte orders are accepted and counted")
    func crcByteOrders() {
        let low = makeFrame(code: 0x09, body: hex("20 23 12 12 00 00 10"))
        var high = low
        high.swapAt(high.count - 1, high.count - 2)
        var parser = YKCFrameParser()
        var buffer = ByteBuffer(bytes: low + high)
        guard case .frame(let a) = parser.next(&buffer), case .frame(let b) = parser.next(&buffer) else {
            Issue.record("expected two frames")
            return
        }
        #expect(a.crcOrder == .lowFirst)
        #expect(b.crcOrder == .highFirst)
        #expect(parser.counters.swappedCRC == 1)
        #expect(b.bytes == low)
    }
}
