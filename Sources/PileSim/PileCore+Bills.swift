import NIOCore
import YKC

/// Bills (0x3B → 0x40, docs/ykc/PROTOCOL-FACTS.md §5.5): the bookkeeping is `BillQueue`; this part sends,
/// re-sends on a timer while logged in, counts, and runs the closed-loop bill load.
extension PileCore {
    func enqueueBill(_ record: TransactionRecord) throws {
        try bills.enqueue(record, gunIndex: gunIndex(record.gun) ?? 0)
        counters?.billsQueued.wrappingIncrement(ordering: .relaxed)
        if phase == .loggedIn { sendBill(record.tradeSerial) }
        notify()
    }

    func sendBill(_ serial: TradeSerial) {
        guard phase == .loggedIn else { return }
        switch bills.prepareSend(serial, now: .now()) {
        case .notPending:
            return
        case .abandoned:
            counters?.billsAbandoned.wrappingIncrement(ordering: .relaxed)
            notify()
        case .send(let record, let gunIndex):
            send(record, nextSequence(gun: gunIndex))
            counters?.billFramesSent.wrappingIncrement(ordering: .relaxed)
            bills.setRetryTimer(after(config.billRetryInterval) { self.sendBill(serial) }, for: serial)
        }
    }

    func handleBillAck(_ frame: YKCFrame) {
        var body = frame.body
        guard let ack = try? TransactionRecordAck(decoding: &body) else { return }
        guard let latency = bills.acknowledge(ack.tradeSerial, result: ack.result, now: .now()) else { return }
        counters?.billsAcked.wrappingIncrement(ordering: .relaxed)
        counters?.billAckLatency.record(latency)
        config.onBillAcked?(pileID, ack.tradeSerial, ack.result, latency)
        refillBills()
    }

    /// Queues a simulated bill for a random gun with a serial unique to this pile (a per-pile
    /// counter in the serial's last four digits, so two bills of one second never collide).
    func enqueueSimulatedBill() {
        let gun = guns[Int.random(in: 0..<guns.count)].number
        billCounter &+= 1
        let serial = TradeSerial.simulated(pileID: pileID, gun: gun, counter: billCounter)
        try? enqueueBill(.simulated(pileID: pileID, gun: gun, tradeSerial: serial))
    }

    /// Closed-loop load (`billsInFlight`): tops the outstanding bills up while logged in.
    func refillBills() {
        guard config.billsInFlight > 0, phase == .loggedIn, config.billLoad?.isEnabled ?? true else { return }
        var attempts = 0
        while bills.count < config.billsInFlight && attempts < config.billsInFlight * 2 {
            enqueueSimulatedBill()
            attempts += 1
        }
    }
}
