import NIOCore

/// The two sequence bytes exactly as they appeared on the wire.
///
/// The byte order of the sequence number is not specified and real piles disagree (docs/ykc/PROTOCOL-FACTS.md §1.2),
/// so replies copy these two bytes verbatim and never interpret them.
public struct YKCSequence: Hashable, Sendable, CustomStringConvertible {
    public var first: UInt8
    public var second: UInt8

    public init(_ first: UInt8, _ second: UInt8) {
        self.first = first
        self.second = second
    }

    /// A platform-originated sequence from a 16-bit counter, written little-endian (docs/ykc/PROTOCOL-FACTS.md §1.2).
    public init(counter: UInt16) {
        self.first = UInt8(truncatingIfNeeded: counter)
        self.second = UInt8(truncatingIfNeeded: counter >> 8)
    }

    public var description: String { hexByte(first) + hexByte(second) }
}

/// Which order the two CRC bytes of a received frame were in.
public enum CRCByteOrder: String, Sendable {
    /// Low byte first: the standard, and what pilegate always sends.
    case lowFirst
    /// High byte first: seen in published samples; accepted and counted.
    case highFirst
}

/// One YKC frame: the envelope fields and the (still undecoded) body.
///
/// `body` is a slice of the receive buffer; decoding a typed message from it does not copy.
public struct YKCFrame: Sendable, Equatable {
    /// The value of the length byte: body length + 4.
    public var length: UInt8 { UInt8(truncatingIfNeeded: body.readableBytes + 4) }
    public var sequence: YKCSequence
    /// 0x00 plain, 0x01 body encrypted (3DES; never seen in the field).
    public var encryption: UInt8
    public var code: UInt8
    public var body: ByteBuffer
    /// CRC value as it was on the wire, interpreted low byte first (0 for frames built locally).
    public var wireCRC: UInt16
    /// Which byte order matched on receive (`.lowFirst` for frames built locally).
    public var crcOrder: CRCByteOrder

    public init(
        sequence: YKCSequence, encryption: UInt8 = 0, code: UInt8, body: ByteBuffer,
        wireCRC: UInt16 = 0, crcOrder: CRCByteOrder = .lowFirst
    ) {
        self.sequence = sequence
        self.encryption = encryption
        self.code = code
        self.body = body
        self.wireCRC = wireCRC
        self.crcOrder = crcOrder
    }

    /// The CRC this frame should carry (computed over sequence, flag, type and body).
    public var computedCRC: UInt16 {
        var crc = CRC16.compute(
            UnsafeRawBufferPointer(start: nil, count: 0), seed: 0xFFFF)
        withUnsafeBytes(of: (sequence.first, sequence.second, encryption, code)) {
            crc = CRC16.compute($0, seed: crc)
        }
        body.withUnsafeReadableBytes { crc = CRC16.compute($0, seed: crc) }
        return crc
    }

    public static func == (lhs: YKCFrame, rhs: YKCFrame) -> Bool {
        lhs.sequence == rhs.sequence && lhs.encryption == rhs.encryption && lhs.code == rhs.code
            && lhs.body == rhs.body
    }

    /// Writes the complete frame (start byte … CRC, low byte first) into `buffer`.
    public func write(into buffer: inout ByteBuffer) {
        YKCFrame.write(
            sequence: sequence, encryption: encryption, code: code, into: &buffer
        ) { $0.writeImmutableBuffer(body) }
    }

    /// Writes a frame whose body is produced by `writeBody`, computing length and CRC in place.
    ///
    /// This is the allocation-free path used for replies: the body is written directly after the
    /// header, then the length byte is patched and the CRC appended.
    @inlinable
    public static func write(
        sequence: YKCSequence, encryption: UInt8 = 0, code: UInt8, into buffer: inout ByteBuffer,
        writeBody: (inout ByteBuffer) -> Void
    ) {
        let start = buffer.writerIndex
        buffer.writeMultipleIntegers(
            UInt8(0x68), UInt8(0), sequence.first, sequence.second, encryption, code)
        writeBody(&buffer)
        let covered = buffer.writerIndex - start - 2
        precondition(covered >= 4 && covered <= 255, "YKC frame body too long: \(covered - 4) bytes")
        buffer.setInteger(UInt8(covered), at: start + 1)
        let crc = buffer.withUnsafeReadableBytes { raw -> UInt16 in
            let offset = start + 2 - buffer.readerIndex
            return CRC16.compute(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + covered)]))
        }
        buffer.writeInteger(crc, endianness: .little)
    }

    /// The complete frame as bytes.
    public var bytes: [UInt8] {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(body.readableBytes + 8)
        write(into: &buffer)
        return Array(buffer.readableBytesView)
    }
}

@usableFromInline
let hexDigitsUpper: [UInt8] = Array("0123456789ABCDEF".utf8)

@inlinable
func hexByte(_ b: UInt8) -> String {
    String(decoding: [hexDigitsUpper[Int(b >> 4)], hexDigitsUpper[Int(b & 0xF)]], as: UTF8.self)
}
