import Foundation
import NIOCore
import YKC

/// Charging sessions: started by the platform (0x34/0xA4), at the pile by card (0x31 → 0x32) or by a
/// test; metered on a timer with a charging 0x13 each tick; ended with an idle 0x13 and a bill.
extension PileCore {
    func beginSession(gun g: Int, tradeSerial: TradeSerial, origin: TransactionOrigin, card: BinaryID) {
        guard guns.indices.contains(g), guns[g].session == nil, phase != .stopped else { return }
        guns[g].session = ChargingSession(
            tradeSerial: tradeSerial, origin: origin, physicalCard: card, startTime: CP56Time2a(date: Date()),
            startedAt: .now(), meterStartRaw: guns[g].meterRaw)
        // SPEC: success must be followed by a 0x13 with status "charging".
        sendRealtime(gun: g)
        guns[g].session?.timer = after(config.chargingRealtimeInterval) {
            self.chargingTick(gun: g, tradeSerial: tradeSerial)
        }
    }

    func chargingTick(gun g: Int, tradeSerial: TradeSerial) {
        guard guns[g].session?.tradeSerial == tradeSerial, let session = guns[g].session else { return }
        let seconds = Double(config.chargingRealtimeInterval.nanoseconds) / 1e9
        let added = UInt64(max(0, config.chargingPowerKW * seconds / 3600 * 10_000))
        guns[g].session?.energyRaw = session.energyRaw + added
        guns[g].meterRaw += added
        if phase == .loggedIn { sendRealtime(gun: g) }
        if let duration = config.chargingDuration ?? config.chargingCycle?.sessionLength,
            NIODeadline.now() - session.startedAt >= duration
        {
            endSession(gun: g, reason: .socFull)
            return
        }
        guns[g].session?.timer = after(config.chargingRealtimeInterval) {
            self.chargingTick(gun: g, tradeSerial: tradeSerial)
        }
    }

    /// Ends the gun's session: an idle 0x13, then the bill (0x3B), retried until 0x40.
    @discardableResult
    func endSession(gun g: Int, reason: StopReason) -> TradeSerial? {
        guard guns.indices.contains(g), let session = guns[g].session else { return nil }
        session.timer?.cancel()
        guns[g].session = nil
        sendRealtime(gun: g)
        let record = TransactionRecord.simulated(
            pileID: pileID, gun: guns[g].number, tradeSerial: session.tradeSerial,
            energy: YKCDecimal(units: Int64(session.energyRaw), scale: 4),
            pricePerKWh: totalFlatPrice(), startTime: session.startTime, endTime: CP56Time2a(date: Date()),
            meterStart: YKCDecimal(units: Int64(session.meterStartRaw), scale: 4),
            origin: session.origin, stopReason: reason, physicalCard: session.physicalCard)
        try? enqueueBill(record)
        if let cycle = config.chargingCycle, g == 0 { scheduleCycleSession(after: cycle.pause) }
        return session.tradeSerial
    }

    // MARK: - Charging by itself (`config.chargingCycle`)

    /// Arms the next session of the charging cycle on gun 1 (replacing an armed one).
    func scheduleCycleSession(after delay: TimeAmount) {
        chargingCycleTimer?.cancel()
        chargingCycleTimer = after(delay) {
            self.chargingCycleTimer = nil
            self.startCycleSession()
        }
    }

    /// Starts a cycle session on gun 1 when logged in and idle; offline, the next login re-arms it.
    func startCycleSession() {
        guard phase == .loggedIn, guns[0].session == nil else { return }
        billCounter &+= 1
        let serial = TradeSerial.simulated(pileID: pileID, gun: guns[0].number, counter: billCounter)
        beginSession(gun: 0, tradeSerial: serial, origin: .card, card: .zero)
    }

    /// Energy + service price of the flat period from the billing model (1 yuan/kWh without one).
    func totalFlatPrice() -> YKCDecimal {
        guard let m = billingModel,
            let e = m.flatEnergyPrice.rescaled(to: 5), let s = m.flatServiceFee.rescaled(to: 5)
        else { return YKCDecimal(units: 100_000, scale: 5) }
        return YKCDecimal(units: e + s, scale: 5)
    }

    func realtime(gun g: Int) -> RealtimeData {
        let zeroTemp = YKCDecimal(raw: 0, scale: 0, offset: -50)
        guard let s = guns[g].session else {
            return RealtimeData(
                tradeSerial: .zero, pileId: pileID, gun: guns[g].number, status: .idle, gunHolstered: .yes,
                gunPlugged: .no, outputVoltage: YKCDecimal(units: 0, scale: 1),
                outputCurrent: YKCDecimal(units: 0, scale: 1), gunTemperature: zeroTemp, gunCableCode: .zero,
                soc: 0, maxBatteryTemperature: zeroTemp, chargingMinutes: 0, remainingMinutes: 0,
                energy: YKCDecimal(units: 0, scale: 4), lossAdjustedEnergy: YKCDecimal(units: 0, scale: 4),
                amount: YKCDecimal(units: 0, scale: 4), hardwareFaults: .init(raw: 0))
        }
        let minutes = UInt16(clamping: (NIODeadline.now() - s.startedAt).nanoseconds / 60_000_000_000)
        let currentDeciAmps = Int64(config.chargingPowerKW * 1000 / 400 * 10)
        let amount = TransactionRecord.amount(energyRaw: s.energyRaw, pricePerKWh: totalFlatPrice())
        return RealtimeData(
            tradeSerial: s.tradeSerial, pileId: pileID, gun: guns[g].number, status: .charging, gunHolstered: .no,
            gunPlugged: .yes, outputVoltage: YKCDecimal(units: 4000, scale: 1),
            outputCurrent: YKCDecimal(units: max(0, min(currentDeciAmps, 65535)), scale: 1),
            gunTemperature: YKCDecimal(units: 30, scale: 0), gunCableCode: .zero,
            soc: UInt8(clamping: 30 + Int(minutes)), maxBatteryTemperature: YKCDecimal(units: 28, scale: 0),
            chargingMinutes: minutes, remainingMinutes: 60, energy: YKCDecimal(units: Int64(s.energyRaw), scale: 4),
            lossAdjustedEnergy: YKCDecimal(units: Int64(s.energyRaw), scale: 4), amount: amount,
            hardwareFaults: .init(raw: 0))
    }

    func sendRealtime(gun g: Int, sequence: YKCSequence? = nil) {
        guard context != nil, guns.indices.contains(g) else { return }
        send(realtime(gun: g), sequence ?? nextSequence(gun: g))
    }

    // MARK: - Pile-initiated start (0x31 → 0x32)

    func requestCardStart(
        gun g: Int, card: BinaryID, timeout: TimeAmount, promise: EventLoopPromise<StartRequestReply>
    ) {
        guard guns.indices.contains(g) else { return promise.fail(SimulatedPileError.invalidGun(g + 1)) }
        guard phase == .loggedIn else { return promise.fail(SimulatedPileError.notConnected) }
        if let old = guns[g].cardStartWaiter {
            old.timer.cancel()
            old.promise.fail(SimulatedPileError.timeout("0x32 (superseded by a new 0x31)"))
        }
        guns[g].pendingCard = card
        let request = StartRequest(
            pileId: pileID, gun: guns[g].number, startMethod: .card, passwordRequired: .no, cardNumber: card,
            password: HexBytes(zeros: 16), vin: "")
        send(request, nextSequence(gun: g))
        let timer = after(timeout) {
            if let w = self.guns[g].cardStartWaiter {
                self.guns[g].cardStartWaiter = nil
                w.promise.fail(SimulatedPileError.timeout("0x32 for gun \(g + 1)"))
            }
        }
        guns[g].cardStartWaiter = (promise, timer)
    }

    func handleStartRequestReply(_ frame: YKCFrame) {
        var body = frame.body
        guard let reply = try? StartRequestReply(decoding: &body), let g = gunIndex(reply.gun) else { return }
        startReplies.append(reply)
        if startReplies.count > 64 { startReplies.removeFirst() }
        if reply.authResult == .succeeded {
            beginSession(
                gun: g, tradeSerial: reply.tradeSerial, origin: .card, card: guns[g].pendingCard ?? .zero)
        }
        guns[g].pendingCard = nil
        if let w = guns[g].cardStartWaiter {
            guns[g].cardStartWaiter = nil
            w.timer.cancel()
            w.promise.succeed(reply)
        }
    }
}
