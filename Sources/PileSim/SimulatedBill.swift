import Foundation
import YKC

extension TransactionRecord {
    /// A plausible bill (0x3B) for a simulated session: all energy in the flat period, priced at
    /// `pricePerKWh` (energy + service, yuan/kWh), meter readings consistent with the energy.
    /// Tests and the load driver use it to upload bills without filling 31 fields by hand.
    public static func simulated(
        pileID: PileID, gun: GunNumber, tradeSerial: TradeSerial,
        energy: YKCDecimal = YKCDecimal(units: 100_000, scale: 4),
        pricePerKWh: YKCDecimal = YKCDecimal(units: 100_000, scale: 5),
        startTime: CP56Time2a? = nil, endTime: CP56Time2a? = nil,
        meterStart: YKCDecimal = YKCDecimal(units: 10_000_000, scale: 4),
        origin: TransactionOrigin = .app, stopReason: StopReason = .appRemoteStop,
        physicalCard: BinaryID = .zero, vin: String = ""
    ) -> TransactionRecord {
        let now = Date()
        let energyRaw = UInt64(max(0, energy.rescaled(to: 4) ?? 0))
        let meterStartRaw = max(0, meterStart.rescaled(to: 4) ?? 0)
        let amount = amount(energyRaw: energyRaw, pricePerKWh: pricePerKWh)
        let zeroEnergy = YKCDecimal(units: 0, scale: 4)
        let zeroPrice = YKCDecimal(units: 0, scale: 5)
        let kwh = YKCDecimal(units: Int64(energyRaw), scale: 4)
        return TransactionRecord(
            tradeSerial: tradeSerial, pileId: pileID, gun: gun,
            startTime: startTime ?? CP56Time2a(date: now.addingTimeInterval(-1800)),
            endTime: endTime ?? CP56Time2a(date: now),
            sharpUnitPrice: zeroPrice, sharpEnergy: zeroEnergy, sharpLossAdjustedEnergy: zeroEnergy,
            sharpAmount: zeroEnergy,
            peakUnitPrice: zeroPrice, peakEnergy: zeroEnergy, peakLossAdjustedEnergy: zeroEnergy,
            peakAmount: zeroEnergy,
            flatUnitPrice: pricePerKWh, flatEnergy: kwh, flatLossAdjustedEnergy: kwh, flatAmount: amount,
            valleyUnitPrice: zeroPrice, valleyEnergy: zeroEnergy, valleyLossAdjustedEnergy: zeroEnergy,
            valleyAmount: zeroEnergy,
            meterStart: YKCDecimal(units: meterStartRaw, scale: 4),
            meterEnd: YKCDecimal(units: meterStartRaw + Int64(energyRaw), scale: 4),
            totalEnergy: kwh, totalLossAdjustedEnergy: kwh, totalAmount: amount,
            vin: vin, origin: origin, transactionTime: CP56Time2a(date: now), stopReason: stopReason,
            physicalCardNumber: physicalCard)
    }

    /// Money for `energyRaw` (0.0001 kWh) at `pricePerKWh`, in 0.0001 yuan as 0x3B/0x13 carry it.
    static func amount(energyRaw: UInt64, pricePerKWh: YKCDecimal) -> YKCDecimal {
        let price = UInt64(max(0, pricePerKWh.rescaled(to: 5) ?? 100_000))
        let (product, overflow) = energyRaw.multipliedReportingOverflow(by: price)
        let raw = overflow ? UInt64(UInt32.max) : min(product / 100_000, UInt64(UInt32.max))
        return YKCDecimal(units: Int64(raw), scale: 4)
    }
}

extension TradeSerial {
    /// A trade serial by SPEC's rule: pile id (14) + gun (2) + yyMMddHHmmss (12) + 4-digit counter.
    public static func simulated(pileID: PileID, gun: GunNumber, counter: Int, date: Date = Date()) -> TradeSerial {
        let t = CP56Time2a(date: date)
        let stamp = String(
            format: "%02d%02d%02d%02d%02d%02d", Int(t.yearByte & 0x7F), Int(t.monthByte & 0x0F),
            Int(t.dayByte & 0x1F), Int(t.hourByte & 0x1F), Int(t.minuteByte & 0x3F), Int(t.milliseconds / 1000))
        let text = pileID.description + String(format: "%02d", gun.number % 100) + stamp
            + String(format: "%04d", abs(counter) % 10_000)
        return TradeSerial(text) ?? .zero
    }
}
