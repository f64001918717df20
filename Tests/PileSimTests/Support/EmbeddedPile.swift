import NIOCore
import NIOEmbedded
import YKC

@testable import PileSim

/// One pile's firmware (`PileCore`) on an `EmbeddedChannel`: the test hands it the platform's frames,
/// reads what it wrote, and moves its clock, so its behaviour is checked event by event without a
/// socket or a wall clock. Reconnection is off: a reconnect would need a real bootstrap.
final class EmbeddedPile {
    let channel: EmbeddedChannel
    let core: PileCore
    var config: SimulatedPileConfig { core.config }

    /// A connected pile that has just sent its login.
    init(_ configure: (inout SimulatedPileConfig) -> Void = { _ in }) throws {
        var config = SimulatedPileConfig.fast(pileID: PileCoreTests.pileID, gunCount: 2)
        config.reconnect.enabled = false
        configure(&config)
        channel = EmbeddedChannel()
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 9)
        core = PileCore(config: config, target: address, eventLoop: channel.embeddedEventLoop)
        core.phase = .connecting
        core.connectionID = 1
        try channel.pipeline.syncOperations.addHandler(PileChannelHandler(core: core, connectionID: 1))
        try channel.connect(to: address).wait()
    }

    /// The frames written since the last call.
    func sent() throws -> [YKCFrame] {
        var frames: [YKCFrame] = []
        var parser = YKCFrameParser()
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            while let event = parser.next(&buffer) {
                if case .frame(let frame) = event { frames.append(frame) }
            }
        }
        return frames
    }

    /// The platform sends `message` with `sequence`.
    func receive<M: YKCMessageBody>(_ message: M, sequence: YKCSequence = YKCSequence(counter: 0)) throws {
        try channel.writeInbound(YKCParseEvent.frame(message.frame(sequence: sequence)))
        channel.embeddedEventLoop.run()
    }

    func advance(_ amount: TimeAmount) {
        channel.embeddedEventLoop.advanceTime(by: amount)
    }

    /// Logs in (the platform accepts) and drops what that made the pile send.
    func logIn() throws {
        _ = try sent()
        try receive(LoginReply(pileId: config.pileID, result: .accepted))
        _ = try sent()
    }

    func finish() {
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }
}
