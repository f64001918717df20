import NIOCore

// Human-facing decoding of frames given as hex text: `pilegate decode`, tests and log tooling.
// It lives in the YKC target (not in the CLI) so the exact output can be tested without a process.

/// Hex text → bytes, for frames pasted from logs, documents and captures.
public enum YKCHex {
    /// Why a piece of text is not hex bytes. Offsets count characters of the input, from 0.
    public enum ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        case empty
        case oddLength(digits: Int)
        case invalidCharacter(Character, offset: Int)

        public var description: String {
            switch self {
            case .empty: "no hex digits"
            case .oddLength(let n): "odd number of hex digits (\(n)); every byte needs two"
            case .invalidCharacter(let c, let offset):
                "character '\(c.unicodeScalars.map { $0.escaped(asASCII: true) }.joined())' at position \(offset) is not a hex digit"
            }
        }
    }

    /// Parses hex digits, ignoring whitespace anywhere (so `68 0C 00 19 …` works as one frame).
    public static func parse(_ text: String) throws(ParseError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count / 2)
        var high: UInt8?
        var digits = 0
        for (offset, c) in text.enumerated() {
            if c.isWhitespace { continue }
            guard let v = c.hexDigitValue, c.isASCII else { throw .invalidCharacter(c, offset: offset) }
            digits += 1
            if let h = high {
                out.append(h << 4 | UInt8(v))
                high = nil
            } else {
                high = UInt8(v)
            }
        }
        if digits == 0 { throw .empty }
        if high != nil { throw .oddLength(digits: digits) }
        return out
    }

    /// Uppercase hex of `bytes`, no separators.
    public static func string(_ bytes: some Sequence<UInt8>) -> String {
        HexBytes(Array(bytes)).description
    }
}

/// What is wrong with one frame given as hex; each case names the problem for a one-line message.
public enum YKCFrameInputError: Error, Hashable, Sendable, CustomStringConvertible {
    case badHex(YKCHex.ParseError)
    /// The bytes at `offset` of the input do not start with 0x68.
    case missingStartByte(found: UInt8, offset: Int)
    /// The length byte is below 4, the size of sequence + flag + type.
    case badLengthByte(UInt8)
    /// Fewer bytes than the length byte asks for.
    case truncated(lengthByte: UInt8?, need: Int, have: Int)
    /// The CRC matches in neither byte order. `given` is how many bytes the input had from the
    /// start byte on, so a wrong length byte (which also breaks the CRC) can be pointed out.
    case crcMismatch(wire: UInt16, computed: UInt16, lengthByte: UInt8, given: Int)

    public var description: String {
        switch self {
        case .badHex(let e): "bad hex: \(e)"
        case .missingStartByte(let b, let offset):
            "no start byte: expected 0x68 at byte \(offset), found 0x\(hexByte(b))"
        case .badLengthByte(let l): "bad length byte 0x\(hexByte(l)) (\(l)): below the minimum of 4"
        case .truncated(let l, let need, let have):
            if let l {
                "truncated frame: length byte 0x\(hexByte(l)) needs \(need) bytes, only \(have) given"
            } else {
                "truncated frame: \(have) byte(s), a frame needs at least 8"
            }
        case .crcMismatch(let wire, let computed, let l, let given):
            YKCFrameError.crcMismatch(wire: wire, computed: computed).description
                + (given > Int(l) + 4
                    ? "; the length byte 0x\(hexByte(l)) gives a \(Int(l) + 4)-byte frame but \(given) bytes follow (wrong length byte?)"
                    : "")
        }
    }
}

/// Splits bytes that hold one frame, or several back to back, strictly: unlike the stream
/// parser there is no resynchronisation, because a tool user wants each problem named, not skipped.
public enum YKCFrameSplitter {
    /// Frames (or the first problem) in order. After a problem whose extent is unknown (no start
    /// byte, bad length byte, wrong length byte, truncation) the rest of the input is not read.
    /// With `ignoreCRC`, a frame whose CRC matches neither order is still returned (the report
    /// then says `"crcOrder":"mismatch"`), so hand-written samples with placeholder CRCs decode.
    public static func split(_ bytes: [UInt8], ignoreCRC: Bool = false) -> [Result<YKCFrame, YKCFrameInputError>] {
        var results: [Result<YKCFrame, YKCFrameInputError>] = []
        var i = 0
        while i < bytes.count {
            let have = bytes.count - i
            guard bytes[i] == 0x68 else {
                results.append(.failure(.missingStartByte(found: bytes[i], offset: i)))
                return results
            }
            guard have >= 2 else {
                results.append(.failure(.truncated(lengthByte: nil, need: 8, have: have)))
                return results
            }
            let length = bytes[i + 1]
            guard length >= 4 else {
                results.append(.failure(.badLengthByte(length)))
                return results
            }
            let total = Int(length) + 4
            guard have >= total else {
                results.append(.failure(.truncated(lengthByte: length, need: total, have: have)))
                return results
            }
            let computed = CRC16.compute(bytes[(i + 2)..<(i + 2 + Int(length))])
            let lo = UInt16(bytes[i + total - 2])
            let hi = UInt16(bytes[i + total - 1])
            let wire = lo | hi << 8
            let order: CRCByteOrder?
            if computed == wire {
                order = .lowFirst
            } else if computed == (hi | lo << 8) {
                order = .highFirst
            } else {
                order = nil
            }
            if order == nil && !ignoreCRC {
                results.append(.failure(.crcMismatch(wire: wire, computed: computed, lengthByte: length, given: have)))
                // A CRC failure followed by something that is not a frame most likely means the
                // length byte is wrong; stop rather than report the tail as a second problem.
                if have > total && bytes[i + total] != 0x68 { return results }
                i += total
                continue
            }
            let frame = YKCFrame(
                sequence: YKCSequence(bytes[i + 2], bytes[i + 3]), encryption: bytes[i + 4], code: bytes[i + 5],
                body: ByteBuffer(bytes: bytes[(i + 6)..<(i + total - 2)]), wireCRC: wire,
                crcOrder: order ?? .lowFirst)
            results.append(.success(frame))
            i += total
        }
        return results
    }
}

/// One decoded frame as a JSON object: `{"envelope":{…},"message":{…}}`.
///
/// The envelope shows what a person debugging a pile needs next to the fields: the raw sequence
/// bytes, the type code in decimal and hex, both CRCs (each as its two bytes low-first, i.e. in
/// wire order for a standard frame) and which byte order matched.
public struct YKCFrameReport: Sendable {
    public var frame: YKCFrame
    public var message: YKCMessage

    public init(frame: YKCFrame) {
        self.frame = frame
        self.message = YKCMessage.decode(frame)
    }

    /// `lowFirst`, `highFirst`, or `mismatch` (only reachable when CRC checking was disabled).
    public var crcOrder: String {
        let computed = frame.computedCRC
        if computed == frame.wireCRC { return CRCByteOrder.lowFirst.rawValue }
        if computed == frame.wireCRC.byteSwapped { return CRCByteOrder.highFirst.rawValue }
        return "mismatch"
    }

    public func writeJSON(into json: inout JSONWriter) {
        let info = YKCMessageInfo.of(code: frame.code)
        json.beginObject()
        json.key("envelope")
        json.beginObject()
        json.field("length", Int(frame.body.readableBytes) + 4)
        json.field("sequence", frame.sequence.description)
        json.field("encryption", frame.encryption)
        json.field("code", frame.code)
        json.field("codeHex", "0x" + hexByte(frame.code))
        json.field("name", message.name)
        json.key("title")
        if let info { json.string(info.title) } else { json.null() }
        json.field("crcWire", Self.lowFirstHex(frame.wireCRC))
        json.field("crcComputed", Self.lowFirstHex(frame.computedCRC))
        json.field("crcOrder", crcOrder)
        json.endObject()
        json.key("message")
        message.writeJSON(into: &json)
        json.endObject()
    }

    /// The report as one line of JSON (no trailing newline).
    public var jsonLine: String {
        var w = JSONWriter()
        writeJSON(into: &w)
        return w.string
    }

    static func lowFirstHex(_ crc: UInt16) -> String {
        hexByte(UInt8(truncatingIfNeeded: crc)) + hexByte(UInt8(truncatingIfNeeded: crc >> 8))
    }
}

/// One line of `pilegate decode` output.
public enum YKCDecodeOutput: Hashable, Sendable {
    /// A JSON object for stdout.
    case json(String)
    /// A one-line `error: frame N: …` message for stderr.
    case error(String)
}

/// The logic of `pilegate decode`: hex inputs in, JSON lines and error lines out, frames numbered
/// from 1 across all inputs so an error message points at the right one.
public struct YKCDecodeSession: Sendable {
    public var ignoreCRC: Bool
    /// Frames (or undecodable inputs) seen so far.
    public private(set) var frameCount = 0
    /// How many of them failed.
    public private(set) var failureCount = 0

    public init(ignoreCRC: Bool = false) {
        self.ignoreCRC = ignoreCRC
    }

    /// Decodes one input (a command-line argument or a stdin line), which may hold several frames.
    public mutating func decode(_ text: String) -> [YKCDecodeOutput] {
        let bytes: [UInt8]
        do {
            bytes = try YKCHex.parse(text)
        } catch {
            return [fail(.badHex(error))]
        }
        return YKCFrameSplitter.split(bytes, ignoreCRC: ignoreCRC).map { result in
            switch result {
            case .success(let frame):
                frameCount += 1
                return .json(YKCFrameReport(frame: frame).jsonLine)
            case .failure(let error):
                return fail(error)
            }
        }
    }

    /// Decodes stdin-style text: one input per line; blank lines and `#` comments are skipped.
    public mutating func decodeLines(_ text: String) -> [YKCDecodeOutput] {
        var out: [YKCDecodeOutput] = []
        for line in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            if let input = Self.input(fromLine: String(line)) { out += decode(input) }
        }
        return out
    }

    /// The hex input on a stdin line, or nil when the line is blank or a `#` comment.
    public static func input(fromLine line: String) -> String? {
        let trimmed = line.trimmingWhitespace()
        if trimmed.isEmpty || trimmed.hasPrefix("#") { return nil }
        return trimmed
    }

    private mutating func fail(_ error: YKCFrameInputError) -> YKCDecodeOutput {
        frameCount += 1
        failureCount += 1
        return .error("error: frame \(frameCount): \(error)")
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
