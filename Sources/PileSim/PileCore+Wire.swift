import Foundation
import NIOCore
import NIOPosix
import YKC
import YKCCipher

/// The wire: sequence numbers, typed and raw frames out (sealed when a key is set), frames in
/// (opened, counted, recorded) and their dispatch by code.
extension PileCore {
    func nextSequence(gun index: Int) -> YKCSequence { sequencer.next(gun: index) }

    /// Writes one typed frame straight into a fresh buffer; false when there is no connection.
    @discardableResult
    func send<M: YKCMessageBody>(_ message: M, _ sequence: YKCSequence) -> Bool {
        guard let context else { return false }
        var buffer = context.channel.allocator.buffer(capacity: (M.bodyLength ?? 120) + 8)
        if config.frameCipher != nil {
            sealed(message.frame(sequence: sequence)).write(into: &buffer)
        } else {
            message.writeFrame(sequence: sequence, into: &buffer)
        }
        context.writeAndFlush(NIOAny(buffer), promise: nil)
        noteSent(M.code)
        return true
    }

    func noteSent(_ code: UInt8) {
        counters?.framesSent.wrappingIncrement(ordering: .relaxed)
        if config.detailedStats { framesSent[code, default: 0] += 1 }
    }

    /// `frame` encrypted with `frameCipher` when one is configured; otherwise (or when the body is
    /// too long to encrypt) unchanged.
    func sealed(_ frame: YKCFrame) -> YKCFrame {
        guard let cipher = config.frameCipher, frame.encryption == 0 else { return frame }
        return (try? cipher.encrypt(frame: frame)) ?? frame
    }

    /// Writes a caller-built frame (test API).
    func sendFrame(_ frame: YKCFrame) -> EventLoopFuture<Void> {
        guard let context else { return eventLoop.makeFailedFuture(SimulatedPileError.notConnected) }
        var buffer = context.channel.allocator.buffer(capacity: frame.body.readableBytes + 8)
        frame.write(into: &buffer)
        let promise = eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(buffer), promise: promise)
        noteSent(frame.code)
        return promise.futureResult
    }

    /// Writes arbitrary bytes (garbage, partial frames) for hostile-client tests.
    func rawSend(_ bytes: [UInt8]) -> EventLoopFuture<Void> {
        guard let context else { return eventLoop.makeFailedFuture(SimulatedPileError.notConnected) }
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        let promise = eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(buffer), promise: promise)
        return promise.futureResult
    }

    // MARK: - Receiving

    func parseError(_ error: YKCFrameError, connectionID id: Int) {
        guard id == connectionID else { return }
        parseErrors += 1
        counters?.parseErrors.wrappingIncrement(ordering: .relaxed)
    }

    func channelError(_ error: any Error, connectionID id: Int) {
        guard id == connectionID else { return }
        // A platform that closes with bytes unread by it sends a reset instead of a FIN: either way
        // the peer closed (PileCloseReason.peerClosed), as firmware sees it.
        if let io = error as? IOError, io.errnoCode == ECONNRESET || io.errnoCode == EPIPE {
            close(.peerClosed)
        } else {
            close(.error("\(error)"))
        }
    }

    func received(_ frame: YKCFrame, connectionID id: Int) {
        guard id == connectionID else { return }
        var frame = frame
        if frame.encryption == FrameCipher.encryptedFlag {
            // A pile reads an encrypted frame only with its key; anything else is dropped.
            guard let cipher = config.frameCipher, let plain = try? cipher.decrypt(frame: frame) else {
                undecryptableFrames += 1
                notify()
                return
            }
            framesDecrypted += 1
            frame = plain
        }
        counters?.framesReceived.wrappingIncrement(ordering: .relaxed)
        if config.detailedStats { framesReceived[frame.code, default: 0] += 1 }
        record(frame)
        switch frame.code {
        case 0x02: handleLoginReply(frame, connectionID: id)
        case 0x04: handleHeartbeatReply(frame)
        case 0x0A: handleBillingModelReply(frame)
        case 0x32: handleStartRequestReply(frame)
        case 0x40: handleBillAck(frame)
        default:
            // FW ignores platform requests until it is logged in (docs/ykc/PROTOCOL-FACTS.md §5.1).
            if phase == .loggedIn && config.autoAnswerCommands && !config.ignoredCommandCodes.contains(frame.code) {
                answerCommand(frame)
            }
        }
        notify()
    }
}
