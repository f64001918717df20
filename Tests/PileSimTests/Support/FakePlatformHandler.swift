import NIOCore
import YKC

/// The fake platform's side of one pile connection: records every frame and answers as
/// `FakePlatformState` says.
final class FakePlatformHandler: ChannelInboundHandler {
    typealias InboundIn = YKCParseEvent
    typealias OutboundOut = ByteBuffer
    let state: FakePlatformState

    init(state: FakePlatformState) { self.state = state }

    func channelActive(context: ChannelHandlerContext) {
        state.channels.append(context.channel)
        state.connectionsAccepted += 1
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .frame(let frame) = unwrapInboundIn(data) else { return }
        state.received.append(frame)
        let seq = frame.sequence
        switch YKCMessage.decode(frame) {
        case .login(let m):
            reply(context, LoginReply(pileId: m.pileId, result: state.loginResult), seq)
        case .heartbeat(let m):
            if state.answerHeartbeats { reply(context, HeartbeatReply(pileId: m.pileId, gun: m.gun, reply: 0), seq) }
        case .billingModelRequest(let m):
            let price = YKCDecimal(units: 80_000, scale: 5)
            let fee = YKCDecimal(units: 40_000, scale: 5)
            reply(
                context,
                BillingModelReply(
                    pileId: m.pileId, billingModel: "0001", sharpEnergyPrice: price, sharpServiceFee: fee,
                    peakEnergyPrice: price, peakServiceFee: fee, flatEnergyPrice: price, flatServiceFee: fee,
                    valleyEnergyPrice: price, valleyServiceFee: fee, lossRatio: 0,
                    periods: Array(repeating: .flat, count: 48)), seq)
        case .startRequest(let m):
            reply(
                context,
                StartRequestReply(
                    tradeSerial: TradeSerial("3201060000000101250101120000" + "0001") ?? .zero, pileId: m.pileId,
                    gun: m.gun, logicalCardNumber: "0000001000000573", balance: YKCDecimal(units: 10_000, scale: 2),
                    authResult: .succeeded, failureReason: AuthFailureReason(rawValue: 0)), seq)
        case .transactionRecord(let m):
            let n = (state.billReceipts[m.tradeSerial] ?? 0) + 1
            state.billReceipts[m.tradeSerial] = n
            if n >= state.ackBillOnReceipt {
                reply(context, TransactionRecordAck(tradeSerial: m.tradeSerial, result: .accepted), seq)
            }
        default:
            break
        }
    }

    private func reply<M: YKCMessageBody>(_ context: ChannelHandlerContext, _ message: M, _ seq: YKCSequence) {
        var buffer = context.channel.allocator.buffer(capacity: 128)
        message.writeFrame(sequence: seq, into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }
}
