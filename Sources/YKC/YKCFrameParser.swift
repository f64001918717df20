import NIOCore

/// What the parser found next in a byte stream.
public enum YKCParseEvent: Sendable, Equatable {
    case frame(YKCFrame)
    case error(YKCFrameError)
}

/// Counts of what a parser has seen, by kind.
public struct YKCFrameCounters: Sendable, Equatable {
    public var frames = 0
    public var swappedCRC = 0
    public var garbageBytes = 0
    public var garbageRuns = 0
    public var invalidLength = 0
    public var invalidEncryptionFlag = 0
    public var crcMismatch = 0
    public var truncated = 0
    public init() {}
}

/// Splits a byte stream into YKC frames (docs/ykc/PROTOCOL-FACTS.md §1, §1.5).
///
/// Reassembles frames split or coalesced across reads, skips to the next `0x68` after garbage,
/// validates the length byte and the encryption flag, checks CRC-16/MODBUS in both byte orders,
/// and on a bad candidate drops one byte and tries again, so a valid frame that follows garbage
/// is never lost. It never buffers: bytes stay in the caller's buffer, and at most one partial
/// frame (≤ 258 bytes) is left unread between calls.
public struct YKCFrameParser: Sendable {
    public private(set) var counters = YKCFrameCounters()

    public init() {}

    /// The largest frame: length byte 255 + start, length and two CRC bytes.
    public static let maximumFrameSize = 259

    /// The next frame or error in `buffer`, consuming its bytes; `nil` when more bytes are needed.
    public mutating func next(_ buffer: inout ByteBuffer) -> YKCParseEvent? {
        let readable = buffer.readableBytes
        guard readable > 0 else { return nil }
        // Inspect in place, with one pointer access: the closure says what it found and how many
        // bytes that used up; for a frame it also reads the header bytes.
        let found = buffer.withUnsafeReadableBytes { raw -> Found? in
            if raw[0] != 0x68 {
                var skip = 1
                while skip < readable && raw[skip] != 0x68 { skip += 1 }
                return .error(.garbage(skipped: skip), consumed: skip)
            }
            guard readable >= 2 else { return nil }
            let length = raw[1]
            if length < 4 { return .error(.invalidLength(length), consumed: 1) }
            if readable >= 5 && raw[4] > 1 { return .error(.invalidEncryptionFlag(raw[4]), consumed: 1) }
            let total = Int(length) + 4
            guard readable >= total else { return nil }
            let computed = CRC16.compute(UnsafeRawBufferPointer(rebasing: raw[2..<(2 + Int(length))]))
            let lo = UInt16(raw[total - 2])
            let hi = UInt16(raw[total - 1])
            let wire = lo | hi << 8
            let order: CRCByteOrder
            if computed == wire {
                order = .lowFirst
            } else if computed == (hi | lo << 8) {
                order = .highFirst
            } else {
                return .error(.crcMismatch(wire: wire, computed: computed), consumed: 1)
            }
            return .frame(
                sequence: YKCSequence(raw[2], raw[3]), encryption: raw[4], code: raw[5], wireCRC: wire,
                order: order, total: total)
        }
        guard let found else { return nil }
        switch found {
        case .frame(let sequence, let encryption, let code, let wireCRC, let order, let total):
            let body = buffer.getSlice(at: buffer.readerIndex + 6, length: total - 8) ?? ByteBuffer()
            buffer.moveReaderIndex(forwardBy: total)
            counters.frames += 1
            if order == .highFirst { counters.swappedCRC += 1 }
            return .frame(
                YKCFrame(
                    sequence: sequence, encryption: encryption, code: code, body: body, wireCRC: wireCRC,
                    crcOrder: order))
        case .error(let error, let consumed):
            buffer.moveReaderIndex(forwardBy: consumed)
            count(error)
            return .error(error)
        }
    }

    private enum Found {
        case frame(
            sequence: YKCSequence, encryption: UInt8, code: UInt8, wireCRC: UInt16, order: CRCByteOrder, total: Int)
        case error(YKCFrameError, consumed: Int)
    }

    private mutating func count(_ error: YKCFrameError) {
        switch error {
        case .garbage(let n):
            counters.garbageBytes += n
            counters.garbageRuns += 1
        case .invalidLength: counters.invalidLength += 1
        case .invalidEncryptionFlag: counters.invalidEncryptionFlag += 1
        case .crcMismatch: counters.crcMismatch += 1
        case .truncated: counters.truncated += 1
        }
    }

    /// Like `next`, for when the stream has ended: an incomplete frame is reported once, as
    /// truncated, with every byte that belongs to it — up to a complete frame that starts inside it
    /// (so frames hidden behind a false start byte are still found), else to the end. Its bytes
    /// are not counted again as garbage.
    public mutating func nextAtEnd(_ buffer: inout ByteBuffer) -> YKCParseEvent? {
        if let event = next(&buffer) { return event }
        let readable = buffer.readableBytes
        guard readable > 0 else { return nil }
        let need = readable >= 2 ? Int(buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self) ?? 0) + 4 : 2
        var consumed = readable
        for i in 1..<readable where buffer.getInteger(at: buffer.readerIndex + i, as: UInt8.self) == 0x68 {
            guard var probe = buffer.getSlice(at: buffer.readerIndex + i, length: readable - i) else { break }
            var scout = YKCFrameParser()
            if case .frame? = scout.next(&probe) {
                consumed = i
                break
            }
        }
        counters.truncated += 1
        buffer.moveReaderIndex(forwardBy: consumed)
        return .error(.truncated(have: consumed, need: need))
    }
}
