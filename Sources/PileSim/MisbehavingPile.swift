import Foundation
import NIOCore
import NIOPosix
import YKC

/// Drives one connection through a `Misbehaviour` until the gateway closes it or the run ends.
///
/// A raw socket, not a PileCore: the point is to send what a real pile never would.
public enum MisbehavingPile {
    /// Connects to `target` as `pileID` and misbehaves at `rate` units per second (the
    /// scenario's default when nil) for at most `duration`.
    public static func run(
        _ scenario: Misbehaviour, target: SocketAddress, pileID: PileID, rate: Double? = nil,
        duration: Duration, group: any EventLoopGroup
    ) async throws -> MisbehaviourReport {
        let observer = MisbehaviourObserver()
        var bootstrap = ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(observer) }
            }
        if scenario == .neverRead {
            // A small receive buffer so the gateway's send side fills soon.
            bootstrap = bootstrap.channelOption(ChannelOptions.socketOption(.so_rcvbuf), value: 4_096)
        }
        let channel = try await bootstrap.connect(to: target).get()
        let start = ContinuousClock.now
        let end = start + duration
        var report = MisbehaviourReport(scenario: scenario)
        var generator = SystemRandomNumberGenerator()

        func send(_ bytes: [UInt8]) async {
            guard !bytes.isEmpty else { return }
            report.bytesSent += bytes.count
            try? await channel.writeAndFlush(ByteBuffer(bytes: bytes))
        }
        func closed() -> Bool { observer.state.withLockedValue { $0.closed } }

        if scenario.logsInFirst {
            await send(Misbehaviour.login(pileID, sequence: YKCSequence(counter: 0)).bytes)
            while ContinuousClock.now < end, !closed(), !observer.state.withLockedValue({ $0.loggedIn }) {
                try? await Task.sleep(for: .milliseconds(10))
            }
            if scenario == .neverRead { try? await channel.setOption(ChannelOptions.autoRead, value: false).get() }
        }
        // Units go out in batches every 10 ms (or one per period when slower than 100/s).
        let perSecond = max(rate ?? scenario.defaultRate, 0.001)
        let tick = Duration.nanoseconds(Int64(max(1e9 / perSecond, 1e7)))
        let batch = max(1, Int((perSecond / 100).rounded()))
        while ContinuousClock.now < end, !closed() {
            var bytes: [UInt8] = []
            for _ in 0..<batch {
                bytes += scenario.unit(pileID: pileID, index: report.unitsSent, generator: &generator)
                report.unitsSent += 1
            }
            await send(bytes)
            try? await Task.sleep(for: min(tick, end - ContinuousClock.now))
        }
        let state = observer.state.withLockedValue { $0 }
        report.bytesReceived = state.bytesReceived
        report.loggedIn = state.loggedIn
        report.closedByGateway = state.closed
        let elapsed = ContinuousClock.now - start
        report.seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        try? await channel.close()
        return report
    }
}
