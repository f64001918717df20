import NIOCore
import YKC

/// What the fake platform does and has seen. Lives on the platform's single event loop.
final class FakePlatformState {
    var received: [YKCFrame] = []
    var channels: [any Channel] = []
    var connectionsAccepted = 0
    var loginResult: LoginResult = .accepted
    var answerHeartbeats = true
    /// Acknowledge a bill only on its Nth receipt (1 = first).
    var ackBillOnReceipt = 1
    var billReceipts: [TradeSerial: Int] = [:]
}
