import NIOCore

/// Reads the fields of one frame body from its bytes in place: the generated decoders take the
/// body's pointer once (`ByteBuffer.withUnsafeReadableBytes`) and read every field through this,
/// instead of one `ByteBuffer.readInteger` (with its bounds and exclusivity checks) per field.
///
/// A decoder checks the body length before reading, so reads never run short; if one did, it
/// returns zero values (like the `ByteBuffer` readers) rather than trap.
@usableFromInline
struct YKCBodyReader {
    @usableFromInline let bytes: UnsafeRawBufferPointer
    @usableFromInline var offset = 0

    @inlinable
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    @inlinable
    var readableBytes: Int { bytes.count - offset }

    /// `size` bytes as a big-endian unsigned integer (size ≤ 8); 0 when short.
    @inlinable
    mutating func bigEndian(_ size: Int) -> UInt64 {
        guard size <= readableBytes, let base = bytes.baseAddress else {
            offset = bytes.count
            return 0
        }
        defer { offset += size }
        switch size {
        case 8: return UInt64(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        case 7:  // pile ids
            let hi = UInt64(UInt32(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            let mid = UInt64(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)))
            return hi << 24 | mid << 8 | UInt64(bytes[offset + 6])
        default:
            var v: UInt64 = 0
            for i in 0..<size { v = v << 8 | UInt64(bytes[offset + i]) }
            return v
        }
    }

    /// `size` bytes as a little-endian unsigned integer (size ≤ 8); 0 when short.
    @inlinable
    mutating func ykcReadUInt(_ size: Int) -> UInt64 {
        guard size <= readableBytes, let base = bytes.baseAddress else {
            offset = bytes.count
            return 0
        }
        defer { offset += size }
        switch size {
        case 1: return UInt64(bytes[offset])
        case 2: return UInt64(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
        case 4: return UInt64(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        default:
            var v: UInt64 = 0
            for i in 0..<size { v |= UInt64(bytes[offset + i]) << UInt64(8 * i) }
            return v
        }
    }

    /// The next `n` bytes (fewer when short), consumed.
    @inlinable
    mutating func take(_ n: Int) -> UnsafeRawBufferPointer {
        let end = offset + min(max(n, 0), readableBytes)
        defer { offset = end }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<end])
    }

    @inlinable
    mutating func ykcReadPileID() -> PileID { PileID(raw: bigEndian(7)) }

    @inlinable
    mutating func ykcReadGun() -> GunNumber { GunNumber(raw: UInt8(truncatingIfNeeded: ykcReadUInt(1))) }

    @inlinable
    mutating func ykcReadTradeSerial() -> TradeSerial {
        let high = bigEndian(8)
        return TradeSerial(high: high, low: bigEndian(8))
    }

    @inlinable
    mutating func ykcReadBinaryID() -> BinaryID { BinaryID(raw: bigEndian(8)) }

    @inlinable
    mutating func ykcReadCP56() -> CP56Time2a {
        let ms = UInt16(truncatingIfNeeded: ykcReadUInt(2))
        let rest = bigEndian(5)
        return CP56Time2a(
            milliseconds: ms, minuteByte: UInt8(truncatingIfNeeded: rest >> 32),
            hourByte: UInt8(truncatingIfNeeded: rest >> 24), dayByte: UInt8(truncatingIfNeeded: rest >> 16),
            monthByte: UInt8(truncatingIfNeeded: rest >> 8), yearByte: UInt8(truncatingIfNeeded: rest))
    }

    mutating func ykcReadBCD(_ n: Int) -> BCDDigits {
        // A short field is zero-padded on the right, as the ByteBuffer reader's zero value.
        BCDDigits(bytes: take(n), byteCount: n)
    }

    mutating func ykcReadHex(_ n: Int) -> HexBytes {
        let field = take(n)
        guard field.count == n else { return HexBytes(zeros: n) }
        return HexBytes(Array(field))
    }

    /// Fixed-width text padded with 0x00: trailing padding dropped, bytes as Latin-1 scalars.
    mutating func ykcReadASCII(_ n: Int, reversed: Bool = false) -> String {
        let field = take(n)
        guard field.count == n else { return "" }
        if !reversed {
            var end = field.count
            while end > 0 && field[end - 1] == 0 { end -= 1 }
            let text = UnsafeRawBufferPointer(rebasing: field[0..<end])
            // Plain ASCII is its own UTF-8: one copy, no per-scalar work.
            if !text.contains(where: { $0 >= 0x80 }) {
                return String(decoding: text, as: UTF8.self)
            }
        }
        var buffer = ByteBuffer(bytes: field)
        return FixedASCII.read(from: &buffer, count: n, reversed: reversed) ?? ""
    }

    /// Text whose length is given by a length byte: every byte kept (Latin-1 scalars, trailing 0x00 too).
    mutating func ykcReadASCIIExact(_ n: Int) -> String {
        var s = String.UnicodeScalarView()
        for b in take(n) { s.append(UnicodeScalar(b)) }
        return String(s)
    }
}

extension ByteBuffer {
    /// Runs a generated field decoder over the readable bytes and consumes the bytes it read.
    @inlinable
    mutating func ykcDecodeBody<T>(
        _ decode: (inout YKCBodyReader) throws(YKCDecodeError) -> T
    ) throws(YKCDecodeError) -> T {
        let (value, consumed) = try self.withUnsafeReadableBytes { raw throws(YKCDecodeError) -> (T, Int) in
            var reader = YKCBodyReader(raw)
            let value = try decode(&reader)
            return (value, reader.offset)
        }
        self.moveReaderIndex(forwardBy: consumed)
        return value
    }
}
