import NIOCore
import YKC

/// A bill (0x3B) waiting for its 0x40.
struct PendingBill {
    var record: TransactionRecord
    var gunIndex: Int
    var sends = 0
    var timer: PileTimer?
    /// When the bill first went out, for the 0x3B → 0x40 latency.
    var firstSentAt: NIODeadline?
}
