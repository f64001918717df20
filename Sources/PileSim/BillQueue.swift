import NIOCore
import YKC

/// A pile's stored bills (0x3B) and what became of them (docs/ykc/PROTOCOL-FACTS.md §5.5).
///
/// A bill stays until a 0x40 names its trade serial (any result: firmware deletes the stored bill
/// even on "illegal bill"), goes out again on every retry and after every login in the order it was
/// queued, and is abandoned after `maxSends`. Pure bookkeeping: `PileCore` owns the socket and the
/// retry timers and asks this type what to do, so the sequencing is tested without either.
struct BillQueue {
    /// What `prepareSend` decided for a serial.
    enum SendDecision: Equatable {
        /// Send this record (about gun `gunIndex`, for its sequence counter); its send is counted.
        case send(TransactionRecord, gunIndex: Int)
        /// It went out `maxSends` times without a 0x40 and is dropped.
        case abandoned
        /// Not (or no longer) pending: acknowledged or abandoned meanwhile.
        case notPending
    }

    let maxSends: Int
    /// Count each serial's sends in `sends` (the detailed statistics of a test pile, off under load).
    let countsSends: Bool
    private(set) var pending: [TradeSerial: PendingBill] = [:]
    /// Pending serials in the order they were queued: the order they go up after a login.
    private(set) var order: [TradeSerial] = []
    private(set) var acked: Set<TradeSerial> = []
    private(set) var ackResults: [TradeSerial: BillAckResult] = [:]
    private(set) var abandoned: Set<TradeSerial> = []
    /// How often each bill went out (kept only when `countsSends`).
    private(set) var sends: [TradeSerial: Int] = [:]

    init(maxSends: Int, countsSends: Bool) {
        self.maxSends = maxSends
        self.countsSends = countsSends
    }

    var count: Int { pending.count }

    /// Stores a new bill; a serial already pending is refused (a pile never holds two bills of one
    /// transaction). A serial acknowledged or abandoned before may be queued again.
    mutating func enqueue(_ record: TransactionRecord, gunIndex: Int) throws {
        let serial = record.tradeSerial
        guard pending[serial] == nil else { throw SimulatedPileError.duplicateBill(serial) }
        acked.remove(serial)
        abandoned.remove(serial)
        pending[serial] = PendingBill(record: record, gunIndex: gunIndex)
        order.append(serial)
    }

    /// The next send of `serial`: cancels its retry timer, then either counts a send (stamping the
    /// first one at `now`, for the 0x3B → 0x40 latency) or abandons the bill after `maxSends`.
    mutating func prepareSend(_ serial: TradeSerial, now: NIODeadline) -> SendDecision {
        guard var bill = pending[serial] else { return .notPending }
        bill.timer?.cancel()
        bill.timer = nil
        if bill.sends >= maxSends {
            pending[serial] = nil
            order.removeAll { $0 == serial }
            abandoned.insert(serial)
            return .abandoned
        }
        if bill.firstSentAt == nil { bill.firstSentAt = now }
        bill.sends += 1
        if countsSends { sends[serial, default: 0] += 1 }
        pending[serial] = bill
        return .send(bill.record, gunIndex: bill.gunIndex)
    }

    /// Keeps the retry timer of a pending bill (cancelled by the next send, an ack or `cancelTimers`).
    mutating func setRetryTimer(_ timer: PileTimer?, for serial: TradeSerial) {
        pending[serial]?.timer = timer
    }

    /// A 0x40 for `serial`: the bill is done. Returns the time since its first send (zero if it was
    /// never sent), or nil when no such bill is pending (a late or unknown 0x40, ignored).
    mutating func acknowledge(_ serial: TradeSerial, result: BillAckResult, now: NIODeadline) -> TimeAmount? {
        guard let bill = pending.removeValue(forKey: serial) else { return nil }
        bill.timer?.cancel()
        order.removeAll { $0 == serial }
        acked.insert(serial)
        ackResults[serial] = result
        return bill.firstSentAt.map { now - $0 } ?? .zero
    }

    /// The link is gone: no retries until the next login sends every pending bill again.
    mutating func cancelTimers() {
        for serial in order {
            pending[serial]?.timer?.cancel()
            pending[serial]?.timer = nil
        }
    }
}
