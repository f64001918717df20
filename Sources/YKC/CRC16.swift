/// CRC-16/MODBUS (poly 0x8005 reflected as 0xA001, init 0xFFFF, reflected, no final XOR).
///
/// YKC covers `frame[2 ..< 2 + length]` (sequence, encryption flag, type and body) and sends the
/// value low byte first. Some published frames carry the two bytes swapped, because the vendor
/// document's reference routine returns a swapped word; receivers accept both orders (facts §1.1).
public enum CRC16 {
    /// 256-entry table for the reflected polynomial; built once at first use.
    @usableFromInline
    static let table: [UInt16] = (0..<256).map { byte in
        var crc = UInt16(byte)
        for _ in 0..<8 {
            crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xA001 : crc >> 1
        }
        return crc
    }

    /// The CRC of `bytes`, continuing from `seed` (0xFFFF starts a new computation).
    @inlinable
    public static func compute(_ bytes: UnsafeRawBufferPointer, seed: UInt16 = 0xFFFF) -> UInt16 {
        var crc = seed
        table.withUnsafeBufferPointer { t in
            for b in bytes {
                crc = (crc >> 8) ^ t[Int(UInt8(truncatingIfNeeded: crc) ^ b)]
            }
        }
        return crc
    }

    /// The CRC of a byte sequence.
    @inlinable
    public static func compute<S: Sequence>(_ bytes: S) -> UInt16 where S.Element == UInt8 {
        var crc: UInt16 = 0xFFFF
        for b in bytes {
            crc = (crc >> 8) ^ table[Int(UInt8(truncatingIfNeeded: crc) ^ b)]
        }
        return crc
    }
}
