import Foundation
import NIOCore
import Testing

@testable import YKC

/// A small deterministic generator (SplitMix64), so every randomised test reproduces from its seed.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &self) } }
}

/// Hex → bytes for test literals (spaces allowed); a typo in a literal is a test bug, so it traps.
func hex(_ text: String) -> [UInt8] {
    do { return try YKCHex.parse(text) } catch { fatalError("bad hex literal in test: \(error)") }
}

func hexString(_ bytes: some Sequence<UInt8>) -> String { YKCHex.string(bytes) }

/// One row of `Fixtures/vectors.tsv` (a copy of the research note's example frames).
struct VectorRow: CustomTestStringConvertible, Sendable {
    var source: String
    var frameType: String
    var lengthConsistent: Bool
    var bytes: [UInt8]
    var crcOnWire: String
    var crcComputedLowFirst: String
    /// "YES-lowfirst", "YES-highfirst(byte-swapped)" or "NO".
    var verdict: String
    var note: String

    var crcValid: Bool { verdict.hasPrefix("YES") }
    var expectedOrder: CRCByteOrder? {
        verdict.hasPrefix("YES-lowfirst") ? .lowFirst : verdict.hasPrefix("YES-highfirst") ? .highFirst : nil
    }
    var code: UInt8 { bytes[5] }
    var testDescription: String { "\(source) \(frameType) \(note)" }

    static let all: [VectorRow] = load()

    private static func load() -> [VectorRow] {
        guard let url = Bundle.module.url(forResource: "vectors", withExtension: "tsv", subdirectory: "Fixtures"),
            let text = try? String(contentsOf: url, encoding: .utf8)
        else { fatalError("Fixtures/vectors.tsv is missing from the test bundle") }
        var rows: [VectorRow] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.hasPrefix("source_tag") {
            let c = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard c.count >= 14 else { continue }
            rows.append(
                VectorRow(
                    source: c[0], frameType: c[4], lengthConsistent: c[8] == "yes", bytes: hex(c[9]),
                    crcOnWire: c[10], crcComputedLowFirst: c[11], verdict: c[12], note: c[13]))
        }
        return rows
    }
}

/// The repository root, found from this file's path (tests run from the clone).
let repositoryRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Feeds `bytes` through a fresh parser in one go and drains it as at end of stream.
func parseAll(_ bytes: [UInt8]) -> [YKCParseEvent] {
    var parser = YKCFrameParser()
    var buffer = ByteBuffer(bytes: bytes)
    var events: [YKCParseEvent] = []
    while let e = parser.nextAtEnd(&buffer) { events.append(e) }
    return events
}

/// A complete frame with a correct low-first CRC.
func makeFrame(code: UInt8, body: [UInt8], sequence: YKCSequence = YKCSequence(0, 1), encryption: UInt8 = 0) -> [UInt8] {
    YKCFrame(sequence: sequence, encryption: encryption, code: code, body: ByteBuffer(bytes: body)).bytes
}

/// The same frame with its CRC bytes rewritten low byte first (what pilegate sends).
func normalisingCRC(_ frame: [UInt8]) -> [UInt8] {
    var out = frame
    let crc = CRC16.compute(frame[2..<(frame.count - 2)])
    out[out.count - 2] = UInt8(truncatingIfNeeded: crc)
    out[out.count - 1] = UInt8(truncatingIfNeeded: crc >> 8)
    return out
}

extension YKCMessage {
    var rawReason: YKCDecodeError? {
        if case .raw(let r) = self { return r.reason }
        return nil
    }

    var bodyBytes: [UInt8] {
        var b = ByteBuffer()
        encodeBody(into: &b)
        return Array(b.readableBytesView)
    }

    var json: String {
        var w = JSONWriter()
        writeJSON(into: &w)
        return w.string
    }

    /// The JSON object as Foundation values, to read fields the way a backend would.
    var jsonObject: [String: Any] {
        let data = Data(json.utf8)
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
    }
}

func decode(_ code: UInt8, _ body: [UInt8]) -> YKCMessage {
    YKCMessage.decode(code: code, body: ByteBuffer(bytes: body))
}
