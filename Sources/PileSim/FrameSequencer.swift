import NIOCore
import YKC

/// The sequence numbers a pile puts on the frames it originates (docs/ykc/PROTOCOL-FACTS.md §1.2).
///
/// Firmware keeps one counter per gun (pile-level frames use gun 1's); SPEC reads one counter for the
/// connection. Either way every new socket starts again at 0, and the two bytes go on the wire
/// little-endian (firmware) or big-endian. Pure: no socket, no loop, so it is tested on its own.
struct FrameSequencer {
    let scope: SequenceScope
    let byteOrder: Endianness
    private var connectionCounter: UInt16 = 0
    private var gunCounters: [UInt16]

    init(scope: SequenceScope, byteOrder: Endianness, gunCount: Int) {
        self.scope = scope
        self.byteOrder = byteOrder
        self.gunCounters = Array(repeating: 0, count: max(1, gunCount))
    }

    /// A new connection: every counter back to 0.
    mutating func reset() {
        connectionCounter = 0
        for g in gunCounters.indices { gunCounters[g] = 0 }
    }

    /// The sequence for the next frame about gun `index` (0-based); an index out of range counts
    /// on gun 1's counter, as pile-level frames do. Counters wrap at 65,535.
    mutating func next(gun index: Int) -> YKCSequence {
        let value: UInt16
        switch scope {
        case .perConnection:
            value = connectionCounter
            connectionCounter &+= 1
        case .perGun:
            let g = gunCounters.indices.contains(index) ? index : 0
            value = gunCounters[g]
            gunCounters[g] &+= 1
        }
        switch byteOrder {
        case .little: return YKCSequence(counter: value)
        case .big: return YKCSequence(UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value))
        }
    }
}
