import Foundation
import NIOCore
import YKC

/// One must-deliver event as the outbox takes it from the hub, stores it, and hands it back for
/// delivery: what routing and deduplication need, beside the envelope's JSON text.
struct OutboxEvent: Sendable {
    /// The event id, unique per gateway run ("node-boot-N").
    var id: String
    /// The catalogue name (`transaction_record`, `charging_end`, …).
    var event: String
    var code: UInt8?
    var pile: PileID
    var gun: Int?
    /// The session's lane when the event arrived: delivery routes by it, as live events are.
    var lane: String
    /// A bill's trade serial: a re-sent bill with the same serial is stored once.
    var tradeSerial: TradeSerial?
    var receivedAt: Date
    /// The envelope (`BackendEventEnvelope`) as backends receive it.
    var payload: ByteBuffer
}
