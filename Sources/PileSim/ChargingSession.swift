import NIOCore
import YKC

/// An open charging session on one gun.
struct ChargingSession {
    var tradeSerial: TradeSerial
    var origin: TransactionOrigin
    var physicalCard: BinaryID
    var startTime: CP56Time2a
    var startedAt: NIODeadline
    var meterStartRaw: UInt64
    /// Energy so far, 0.0001 kWh.
    var energyRaw: UInt64 = 0
    var timer: PileTimer?
}
