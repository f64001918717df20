import NIOCore
import YKC

/// One gun's firmware state.
struct GunSim {
    let number: GunNumber
    var heartbeatsSent = 0
    var heartbeatsAcked = 0
    /// FW's miss counter: heartbeats sent since the last 0x04 for this gun.
    var unanswered = 0
    var lastHeartbeatSequence: YKCSequence?
    var lastEchoedSequence: YKCSequence?
    var session: ChargingSession?
    /// The gun's energy meter, 0.0001 kWh; a bill carries its start and end readings.
    var meterRaw: UInt64 = 10_000_000
    /// Card of a pending pile-initiated (0x31) start, used when 0x32 authorises it.
    var pendingCard: BinaryID?
    var cardStartWaiter: (promise: EventLoopPromise<StartRequestReply>, timer: PileTimer)?
}
