import MallocCounter
import NIOCore
import YKC

#if canImport(Glibc)
import Glibc
#endif

// ykc-bench: single-thread throughput and heap allocations per frame of the YKC codec.
//
//   ykc-bench [--seconds S] [--repeats R] [--only decode|encode|"parse only"] [--frame 0x03]
//
// For each frame (heartbeat 0x03, real-time data 0x13, transaction record 0x3B):
// - decode: `YKCFrameParser.next` on a buffer holding one frame (reader index rewound each time, the
//   input buffer is reused) + CRC check + `YKCMessage.decode` to the typed message;
// - parse:  the envelope + CRC step alone;
// - encode: the typed message's `writeFrame(sequence:into:)` into a reused, cleared output buffer.
// Each is timed `repeats` times for `seconds` each; the median is reported. Allocations are
// counted over a separate run of 100,000 iterations by the MallocCounter target (interposed malloc).

/// The bodies are those of the JCPP sample frames in vectors.tsv, re-framed with a low-byte-first CRC.
let bodies: [(name: String, code: UInt8, hex: String)] = [
    ("heartbeat 0x03", 0x03, "202312120000100100"),
    (
        "realtime 0x13", 0x13,
        "202312120000100000000010057136003201060039560002030201940EF40354"
            + "00000000000000004E5510002000C057010000000000606C01000000"
    ),
    (
        "transaction 0x3B", 0x3B,
        "202312120000103232390000000000002023121200001001B03604116D0C17A08C09116D0C17F049020000000000"
            + "0000000000000000D0FB0100000000000000000000000000B0AD0100000000000000000000000000905F01007206"
            + "0000720600007805000000000000000000000000720600007206000078050000000000000000000000000000000000"
            + "000001A08C09116D0C17400000000000000000"
    ),
]

func bytes(hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = hex.utf8.makeIterator()
    while let a = it.next(), let b = it.next() {
        guard let v = UInt8(String(decoding: [a, b], as: UTF8.self), radix: 16) else { fatalError("bad hex") }
        out.append(v)
    }
    return out
}

@inline(never)
func blackHole<T>(_ value: T) {
    withUnsafeBytes(of: value) { _ = $0.first }
}

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Runs `op` in batches until `seconds` have passed; returns nanoseconds per call.
func time(seconds: Double, _ op: (Int) -> Void) -> Double {
    let batch = 10_000
    op(batch)  // warm up
    let start = now()
    let budget = UInt64(seconds * 1e9)
    var calls = 0
    var elapsed: UInt64 = 0
    repeat {
        op(batch)
        calls += batch
        elapsed = now() - start
    } while elapsed < budget
    return Double(elapsed) / Double(calls)
}

func allocations(_ op: (Int) -> Void) -> Double {
    let n = 100_000
    op(1000)  // warm up: lazy globals, metadata
    let before = malloc_counter_allocations()
    op(n)
    return Double(malloc_counter_allocations() - before) / Double(n)
}

// The loops keep their state in locals (no captured `var`s, so no dynamic exclusivity checks).

/// Parse + CRC + typed decode of the one frame in `frame`, `n` times, rewinding the same buffer.
@inline(never)
func decodeLoop(_ frame: ByteBuffer, _ n: Int) {
    var input = frame
    let start = input.readerIndex
    var parser = YKCFrameParser()
    var sink: UInt64 = 0
    for _ in 0..<n {
        input.moveReaderIndex(to: start)
        guard case .frame(let f)? = parser.next(&input) else { fatalError("no frame") }
        // Consumed the way a gateway does, by switching on the type. The typed decoders are not
        // inlinable, so every field of the body is still decoded.
        switch YKCMessage.decode(f) {
        case .heartbeat(let m): sink &+= m.pileId.raw
        case .realtimeData(let m): sink &+= m.pileId.raw
        case .transactionRecord(let m): sink &+= m.tradeSerial.low
        case let other: sink &+= UInt64(other.code)
        }
    }
    blackHole(sink)
}

/// Parse + CRC only.
@inline(never)
func parseLoop(_ frame: ByteBuffer, _ n: Int) {
    var input = frame
    let start = input.readerIndex
    var parser = YKCFrameParser()
    for _ in 0..<n {
        input.moveReaderIndex(to: start)
        blackHole(parser.next(&input))
    }
}

let outputCapacity = 512

/// Writes the whole frame (header, body, CRC) of `message` into a cleared, reused buffer.
@inline(never)
@discardableResult
func encodeLoop<M: YKCMessageBody>(_ message: M, _ n: Int) -> ByteBuffer {
    var output = ByteBuffer()
    output.reserveCapacity(outputCapacity)
    let sequence = YKCSequence(0x25, 0xD3)
    for _ in 0..<n {
        output.clear()
        message.writeFrame(sequence: sequence, into: &output)
    }
    return output
}

/// The same through the `YKCMessage` enum (for the sanity check only).
func encodeLoop(_ message: YKCMessage, _ n: Int) -> ByteBuffer {
    var output = ByteBuffer()
    YKCFrame.write(sequence: YKCSequence(0x25, 0xD3), code: message.code, into: &output) {
        message.encodeBody(into: &$0)
    }
    return output
}

var seconds = 1.0
var only: String?
var frameFilter: String?
var repeats = 5
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--seconds": seconds = args.popFirst().flatMap(Double.init) ?? seconds
    case "--repeats": repeats = args.popFirst().flatMap(Int.init) ?? repeats
    case "--only": only = args.popFirst()  // decode | "parse only" | encode
    case "--frame": frameFilter = args.popFirst()  // e.g. 0x03
    default:
        print("usage: ykc-bench [--seconds S] [--repeats R] [--only decode|encode|'parse only'] [--frame 0x03]")
        exit(2)
    }
}

// The counter must really see the Swift runtime's allocations.
let probeBefore = malloc_counter_allocations()
blackHole([Int](repeating: 1, count: Int(probeBefore % 7) + 100))
guard malloc_counter_allocations() > probeBefore else {
    print("ykc-bench: malloc interposition is not active; allocation counts would be wrong")
    exit(1)
}

struct Row {
    var frame: String
    var op: String
    var nanos: Double
    var allocs: Double
}
var rows: [Row] = []

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

for (name, code, hex) in bodies where frameFilter.map({ name.contains($0) }) ?? true {
    var frameBuffer = ByteBuffer()
    let body = bytes(hex: hex)
    YKCFrame.write(sequence: YKCSequence(0x25, 0xD3), code: code, into: &frameBuffer) { $0.writeBytes(body) }
    let frameStart = frameBuffer.readerIndex

    // Sanity: the frame decodes to the typed message, not .raw.
    var probeParser = YKCFrameParser()
    guard case .frame(let probeFrame)? = probeParser.next(&frameBuffer) else { fatalError("\(name): no frame") }
    let message = YKCMessage.decode(probeFrame)
    if case .raw(let r) = message { fatalError("\(name): decoded as raw: \(r.reason)") }
    frameBuffer.moveReaderIndex(to: frameStart)

    let decode: (Int) -> Void = { n in decodeLoop(frameBuffer, n) }
    let parse: (Int) -> Void = { n in parseLoop(frameBuffer, n) }
    let encode: (Int) -> Void
    switch message {
    case .heartbeat(let m): encode = { n in encodeLoop(m, n) }
    case .realtimeData(let m): encode = { n in encodeLoop(m, n) }
    case .transactionRecord(let m): encode = { n in encodeLoop(m, n) }
    default: fatalError("unexpected type")
    }
    // Encode must reproduce the input frame exactly.
    guard encodeLoop(message, 1).readableBytesView.elementsEqual(frameBuffer.readableBytesView) else { fatalError("\(name): encode differs") }

    for (op, run) in [("decode", decode), ("parse only", parse), ("encode", encode)] where only == nil || only == op {
        let nanos = median((0..<repeats).map { _ in time(seconds: seconds, run) })
        rows.append(Row(frame: name, op: op, nanos: nanos, allocs: allocations(run)))
    }
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
func fixed(_ x: Double, _ digits: Int) -> String {
    var p: Double = 1
    for _ in 0..<digits { p *= 10 }
    let r = (x * p).rounded() / p
    var s = String(r)
    if let dot = s.firstIndex(of: ".") {
        let decimals = s.distance(from: dot, to: s.endIndex) - 1
        if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
    } else if digits > 0 {
        s += "." + String(repeating: "0", count: digits)
    }
    return s
}

print("MemoryLayout<YKCMessage>.size = \(MemoryLayout<YKCMessage>.size) bytes, MemoryLayout<YKCFrame>.size = \(MemoryLayout<YKCFrame>.size) bytes")
print("")
print("| frame | operation | ns/frame | frames/s per core | heap allocations/frame |")
print("|---|---|---:|---:|---:|")
for r in rows {
    let perSecond = 1e9 / r.nanos
    let rate = perSecond >= 1e6 ? fixed(perSecond / 1e6, 2) + " M" : fixed(perSecond / 1e3, 0) + " k"
    print("| \(r.frame) | \(r.op) | \(fixed(r.nanos, 1)) | \(rate) | \(fixed(r.allocs, 2)) |")
}
