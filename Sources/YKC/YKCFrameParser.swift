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

/// Splits a byte stream into YKC frames (facts §1, §1.5).
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
        // Inspect in place; the closure says what it found and how many bytes that used up.
        let (found, consumed) = buffer.withUnsafeReadableBytes { raw -> (Found?, Int) in
            if raw[0] != 0x68 {
                var skip = 1
                while skip < readable && raw[skip] != 0x68 { skip += 1 }
                return (.error(.garbage(skipped: skip)), skip)
            }
            guard readable >= 2 else { return (nil, 0) }
            let length = raw[1]
            if length < 4 { return (.error(.invalidLength(length)), 1) }
            if readable >= 5 && raw[4] > 1 { return (.error(.invalidEncryptionFlag(raw[4])), 1) }
            let total = Int(length) + 4
            guard readable >= total else { return (nil, 0) }
            let computed = CRC16.compute(UnsafeRawBufferPointer(rebasing: raw[2..<(2 + Int(length))]))
            let lo = UInt16(raw[total - 2])
            let hi = UInt16(raw[total - 1])
            let wire = lo | hi << 8
            if computed == wire { return (.frame(wire, .lowFirst), total) }
            if computed == (hi | lo << 8) { return (.frame(wire, .highFirst), total) }
            return (.error(.crcMismatch(wire: wire, computed: computed)), 1)
        }
        guard let found else { return nil }
        switch found {
        case .frame(let wireCRC, let order):
            let base = buffer.readerIndex
            // Sequence (2), flag, type packed big-endian so no array is allocated.
            let header = buffer.getInteger(at: base + 2, endianness: .big, as: UInt32.self) ?? 0
            let body = buffer.getSlice(at: base + 6, length: consumed - 8) ?? ByteBuffer()
            buffer.moveReaderIndex(forwardBy: consumed)
            counters.frames += 1
            if order == .highFirst { counters.swappedCRC += 1 }
            return .frame(
                YKCFrame(
                    sequence: YKCSequence(UInt8(truncatingIfNeeded: header >> 24), UInt8(truncatingIfNeeded: header >> 16)),
                    encryption: UInt8(truncatingIfNeeded: header >> 8), code: UInt8(truncatingIfNeeded: header),
                    body: body, wireCRC: wireCRC, crcOrder: order))
        case .error(let error):
            buffer.moveReaderIndex(forwardBy: consumed)
            count(error)
            return .error(error)
        }
    }

    private enum Found {
        case frame(UInt16, CRCByteOrder)
        case error(YKCFrameError)
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

    /// Like `next`, for when the stream has ended: an incomplete frame is reported as truncated and
    /// its first byte dropped, so frames hidden behind a false start byte are still found.
    public mutating func nextAtEnd(_ buffer: inout ByteBuffer) -> YKCParseEvent? {
        if let event = next(&buffer) { return event }
        let readable = buffer.readableBytes
        guard readable > 0 else { return nil }
        let need = readable >= 2 ? Int(buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self) ?? 0) + 4 : 2
        counters.truncated += 1
        buffer.moveReaderIndex(forwardBy: 1)
        return .error(.truncated(have: readable, need: need))
    }
}
