import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@testable import YKC

/// The NIO `ByteToMessageDecoder` around the parser.
@Suite("YKCFrameDecoder (NIO)")
struct FrameDecoderTests {
    static func frames(count: Int, seed: UInt64) -> [[UInt8]] {
        var rng = SeededRandom(seed: seed)
        return (0..<count).map { _ in FrameParserTests.randomFrame(&rng) }
    }

    static func event(_ bytes: [UInt8]) -> YKCParseEvent {
        .frame(YKCFrame(
            sequence: YKCSequence(bytes[2], bytes[3]), encryption: bytes[4], code: bytes[5],
            body: ByteBuffer(bytes: bytes[6..<(bytes.count - 2)])))
    }

    @Test("ByteToMessageDecoderVerifier: frames come out the same however the input is split")
    func verifier() throws {
        let inputs = Self.frames(count: 12, seed: 42)
        let pairs = inputs.map { (ByteBuffer(bytes: $0), [Self.event($0)]) }
            + [(ByteBuffer(bytes: inputs[0] + inputs[1] + inputs[2]), inputs[0...2].map(Self.event))]
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) { YKCFrameDecoder() }
    }

    @Test("an EmbeddedChannel fed byte by byte yields the frames and counts garbage")
    func byteByByte() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(YKCFrameDecoder()))
        let frames = Self.frames(count: 8, seed: 7)
        var stream: [UInt8] = []
        for f in frames { stream += [0x01, 0x02, 0x03] + f }
        for b in stream { try channel.writeInbound(ByteBuffer(bytes: [b])) }
        var got: [[UInt8]] = []
        var garbage = 0
        while let e = try channel.readInbound(as: YKCParseEvent.self) {
            switch e {
            case .frame(let f): got.append(f.bytes)
            case .error(.garbage(let n)): garbage += n
            case .error(let other): Issue.record("unexpected \(other)")
            }
        }
        #expect(got == frames)
        #expect(garbage == 3 * frames.count)
        #expect(try channel.finish().isClean)
    }

    @Test("decodeLast at EOF reports a truncated frame and recovers the frame behind a false start byte")
    func decodeLastAtEOF() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(YKCFrameDecoder()))
        let good = makeFrame(code: 0x03, body: hex("32 01 02 00 00 00 01 01 00"))
        try channel.writeInbound(ByteBuffer(bytes: [0x68, 0xF0, 0x00, 0x00, 0x00] + good))
        #expect(try channel.readInbound(as: YKCParseEvent.self) == nil)  // waiting for 244 bytes
        channel.pipeline.fireChannelInactive()  // EOF: the handler calls decodeLast
        // The cut-off frame's bytes are one truncated frame, not also garbage.
        #expect(try channel.readInbound(as: YKCParseEvent.self) == .error(.truncated(have: 5, need: 244)))
        #expect(try channel.readInbound(as: YKCParseEvent.self) == Self.event(good))
        #expect(try channel.readInbound(as: YKCParseEvent.self) == nil)
        _ = try? channel.finish()
    }
}
