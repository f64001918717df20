import NIOCore
import NIOEmbedded
import YKC

// libFuzzer entry point for the YKC receive path (see docs/FUZZING.md).
//
// The first input byte picks how the rest becomes a byte stream:
// - even: the rest is the stream as a pile would send it (garbage, bad CRCs, split frames and all);
// - odd: the rest is a list of records `flags, seq1, seq2, code, n, body[n]`, each written as a frame
//   with a valid CRC (flags bit 0: CRC high byte first; bit 1: encryption flag 0x01), so mutations
//   reach the typed decoders instead of dying at the CRC check.
// For the stream:
// 1. the whole stream goes through one `YKCFrameParser` (`next` until nil, then `nextAtEnd` until nil);
// 2. the same bytes go through a second parser in chunks whose sizes are derived from the input itself,
//    the way TCP would split them; the frames and the error counts must equal those of (1);
// 3. the same chunks go through `ByteToMessageHandler(YKCFrameDecoder())` on an `EmbeddedChannel`, whose
//    close runs `decodeLast`; its frames must equal those of (2);
// 0. the slicing-by-8 CRC equals the byte-wise reference on the stream bytes;
// 4. every frame is decoded with `YKCMessage.decode`; its JSON must parse; a typed body must re-encode to
//    exactly the original body bytes, and re-framing it must parse back to the same frame; the JSON fed to
//    `YKCMessage.fromJSON(name:_:)` must not crash (it may throw).
// Any violated property traps, which libFuzzer reports as a crash.

@_cdecl("LLVMFuzzerTestOneInput")
public func ykcFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 1 else { return 0 }
    let raw = UnsafeRawBufferPointer(start: data, count: size)
    let rest = UnsafeRawBufferPointer(rebasing: raw[1...])
    if raw[0] & 1 == 0 {
        checkStream(rest)
    } else {
        synthesizedStream(rest).withUnsafeReadableBytes { checkStream($0) }
    }
    return 0
}

/// Frames with valid CRCs built from `flags, seq1, seq2, code, n, body[n]` records.
func synthesizedStream(_ records: UnsafeRawBufferPointer) -> ByteBuffer {
    var out = ByteBuffer()
    var i = 0
    while i + 5 <= records.count {
        let flags = records[i]
        let sequence = YKCSequence(records[i + 1], records[i + 2])
        let code = records[i + 3]
        let n = min(Int(records[i + 4]), 251, records.count - i - 5)
        let body = UnsafeRawBufferPointer(rebasing: records[(i + 5)..<(i + 5 + n)])
        i += 5 + n
        let start = out.writerIndex
        YKCFrame.write(sequence: sequence, encryption: (flags >> 1) & 1, code: code, into: &out) {
            $0.writeBytes(body)
        }
        if flags & 1 == 1, let crc = out.getInteger(at: out.writerIndex - 2, endianness: .little, as: UInt16.self) {
            out.setInteger(crc, at: out.writerIndex - 2, endianness: .big)
        }
        check(out.writerIndex - start == n + 8, "YKCFrame.write wrote \(out.writerIndex - start) bytes for body \(n)")
    }
    return out
}

func checkStream(_ input: UnsafeRawBufferPointer) {
    // The sliced CRC (pointer) equals the byte-wise reference (sequence) on any bytes.
    check(CRC16.compute(input) == CRC16.compute(input.lazy.map { $0 }), "sliced CRC differs from byte-wise CRC")

    // 1. Whole input.
    var whole = ByteBuffer(bytes: input)
    var wholeParser = YKCFrameParser()
    var wholeEvents: [YKCParseEvent] = []
    while let e = wholeParser.next(&whole) { wholeEvents.append(e) }
    while let e = wholeParser.nextAtEnd(&whole) { wholeEvents.append(e) }
    check(whole.readableBytes == 0, "nextAtEnd left \(whole.readableBytes) bytes")

    // 2. Chunked at input-derived points: chunk sizes cycle through (byte % 23) + 1 of the input.
    let chunks = chunkRanges(input)
    var stream = ByteBuffer()
    var chunkParser = YKCFrameParser()
    var chunkEvents: [YKCParseEvent] = []
    for r in chunks {
        stream.writeBytes(UnsafeRawBufferPointer(rebasing: input[r]))
        while let e = chunkParser.next(&stream) { chunkEvents.append(e) }
        check(stream.readableBytes < YKCFrameParser.maximumFrameSize, "parser kept \(stream.readableBytes) bytes")
        stream.discardReadBytes()
    }
    while let e = chunkParser.nextAtEnd(&stream) { chunkEvents.append(e) }
    check(stream.readableBytes == 0, "chunked nextAtEnd left bytes")

    let wholeFrames = frames(wholeEvents)
    check(wholeFrames == frames(chunkEvents), "chunked frames differ from whole-input frames")
    check(wholeFrames.map(\.wireCRC) == frames(chunkEvents).map(\.wireCRC), "chunked CRCs differ")
    var a = wholeParser.counters
    var b = chunkParser.counters
    // A garbage run split across reads is reported once per read; everything else must agree.
    a.garbageRuns = 0
    b.garbageRuns = 0
    check(a == b, "counters differ: whole \(a) chunked \(b)")
    check(a.frames == wholeFrames.count, "frame counter \(a.frames) != \(wholeFrames.count) frames")

    // 3. The NIO decoder over the same chunks, closed at the end (decodeLast).
    let handlerEvents = runDecoder(input, chunks)
    check(frames(handlerEvents) == frames(chunkEvents), "ByteToMessageHandler frames differ")

    // 4. Every frame through the typed codec.
    for frame in wholeFrames { checkFrame(frame) }
}

@inline(never)
func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("YKC fuzz property violated: \(message())") }
}

func chunkRanges(_ input: UnsafeRawBufferPointer) -> [Range<Int>] {
    guard !input.isEmpty else { return [] }
    var ranges: [Range<Int>] = []
    var start = 0
    var i = 0
    while start < input.count {
        // Sizes come from the input, read from its end so they vary independently of the frame bytes.
        let size = Int(input[input.count - 1 - (i % input.count)] % 23) + 1
        let end = min(input.count, start + size)
        ranges.append(start..<end)
        start = end
        i += 1
    }
    return ranges
}

func frames(_ events: [YKCParseEvent]) -> [YKCFrame] {
    events.compactMap { if case .frame(let f) = $0 { f } else { nil } }
}

func runDecoder(_ input: UnsafeRawBufferPointer, _ chunks: [Range<Int>]) -> [YKCParseEvent] {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(YKCFrameDecoder()))
    var events: [YKCParseEvent] = []
    func drain() {
        while let e = try? channel.readInbound(as: YKCParseEvent.self) { events.append(e) }
    }
    for r in chunks {
        do {
            try channel.writeInbound(ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: input[r])))
        } catch {
            fatalError("YKC fuzz: decoder threw \(error)")
        }
        drain()
    }
    // Close: channelInactive makes ByteToMessageHandler call decodeLast.
    _ = channel.close()
    channel.embeddedEventLoop.run()
    drain()
    return events
}

func checkFrame(_ frame: YKCFrame) {
    check(frame.computedCRC == frame.wireCRC || frame.computedCRC == frame.wireCRC.byteSwapped, "CRC not verified")
    let message = YKCMessage.decode(frame)

    var writer = JSONWriter()
    message.writeJSON(into: &writer)
    let text = writer.string
    let json: JSONValue
    do {
        json = try JSONValue.parse(text)
    } catch {
        fatalError("YKC fuzz: JSON of \(message.name) does not parse: \(error)\n\(text)")
    }

    if case .raw = message {
        // Untyped frames are kept as bytes; nothing to re-encode.
    } else {
        check(frame.encryption == 0, "encrypted frame decoded as typed")
        var body = ByteBuffer()
        message.encodeBody(into: &body)
        check(
            body == frame.body,
            "\(message.name) re-encodes to \(hex(body)) instead of \(hex(frame.body))")

        // The whole frame round-trips through the writer and the parser.
        var out = ByteBuffer()
        YKCFrame.write(sequence: frame.sequence, code: message.code, into: &out) { message.encodeBody(into: &$0) }
        var parser = YKCFrameParser()
        guard case .frame(let again)? = parser.next(&out) else { fatalError("YKC fuzz: re-written frame does not parse") }
        check(again == frame && out.readableBytes == 0, "re-written frame differs")
        check(again.crcOrder == .lowFirst, "written CRC is not low byte first")
    }

    // JSON back to a message must not crash; it may reject (e.g. a time that is no calendar date).
    if let typed = try? YKCMessage.fromJSON(name: message.name, json) {
        var body = ByteBuffer()
        typed.encodeBody(into: &body)
        check(typed.code == message.code, "fromJSON gave another type")
    }
}

func hex(_ b: ByteBuffer) -> String {
    b.readableBytesView.map { String($0, radix: 16, uppercase: true) }.joined(separator: " ")
}
