/// CRC-16/MODBUS (poly 0x8005 reflected as 0xA001, init 0xFFFF, reflected, no final XOR).
///
/// YKC covers `frame[2 ..< 2 + length]` (sequence, encryption flag, type and body) and sends the
/// value low byte first. Some published frames carry the two bytes swapped, because the vendor
/// document's reference routine returns a swapped word; receivers accept both orders (docs/ykc/PROTOCOL-FACTS.md §1.1).
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

    /// Eight tables for slicing-by-8, flat: entry `256 * k + b` is the CRC step of byte `b`
    /// followed by `k` zero bytes (`k = 0` is `table`). Built once at first use.
    @usableFromInline
    static let sliceTables: [UInt16] = {
        var t = [UInt16](repeating: 0, count: 8 * 256)
        for b in 0..<256 { t[b] = table[b] }
        for k in 1..<8 {
            for b in 0..<256 {
                let prev = t[256 * (k - 1) + b]
                t[256 * k + b] = (prev >> 8) ^ table[Int(prev & 0xFF)]
            }
        }
        return t
    }()

    /// The CRC of `bytes`, continuing from `seed` (0xFFFF starts a new computation).
    ///
    /// Eight bytes per step (slicing-by-8), then one byte at a time; the same value as the
    /// byte-wise `compute(_:)` on a sequence.
    @inlinable
    public static func compute(_ bytes: UnsafeRawBufferPointer, seed: UInt16 = 0xFFFF) -> UInt16 {
        var crc = seed
        sliceTables.withUnsafeBufferPointer { t in
            let count = bytes.count
            var i = 0
            if count >= 8, let base = bytes.baseAddress {
                while i + 8 <= count {
                    let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                    let x = word ^ UInt64(crc)
                    let c7 = t[0x700 + Int(x & 0xFF)] ^ t[0x600 + Int((x >> 8) & 0xFF)]
                    let c5 = t[0x500 + Int((x >> 16) & 0xFF)] ^ t[0x400 + Int((x >> 24) & 0xFF)]
                    let c3 = t[0x300 + Int((x >> 32) & 0xFF)] ^ t[0x200 + Int((x >> 40) & 0xFF)]
                    let c1 = t[0x100 + Int((x >> 48) & 0xFF)] ^ t[Int(x >> 56)]
                    crc = c7 ^ c5 ^ c3 ^ c1
                    i += 8
                }
            }
            while i < count {
                crc = (crc >> 8) ^ t[Int(UInt8(truncatingIfNeeded: crc) ^ bytes[i])]
                i += 1
            }
        }
        return crc
    }

    /// The CRC of a byte sequence, one byte at a time (the reference for the sliced version).
    @inlinable
    public static func compute<S: Sequence>(_ bytes: S) -> UInt16 where S.Element == UInt8 {
        var crc: UInt16 = 0xFFFF
        for b in bytes {
            crc = (crc >> 8) ^ table[Int(UInt8(truncatingIfNeeded: crc) ^ b)]
        }
        return crc
    }
}
