import NIOCore
import NIOPosix
import PileSim
import YKC

/// A platform in a few lines of NIO: answers 0x01 with 0x02, 0x03 with 0x04, 0x09 with 0x0A,
/// 0x31 with 0x32 and 0x3B with 0x40 (possibly late), records everything, and can push commands.
final class FakePlatform: Sendable {
    let group: MultiThreadedEventLoopGroup
    let loop: any EventLoop
    let state: NIOLoopBoundBox<FakePlatformState>
    let server: any Channel
    let port: Int

    private init(group: MultiThreadedEventLoopGroup, state: NIOLoopBoundBox<FakePlatformState>, server: any Channel) {
        self.group = group
        self.loop = state.eventLoop
        self.state = state
        self.server = server
        self.port = server.localAddress?.port ?? 0
    }

    static func start(_ configure: @escaping @Sendable (FakePlatformState) -> Void = { _ in }) async throws -> FakePlatform {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let state = try await loop.submit {
            let s = FakePlatformState()
            configure(s)
            return NIOLoopBoundBox(s, eventLoop: loop)
        }.get()
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 4096)
            .childChannelInitializer { channel in FakePlatform.initializeChild(channel, state: state) }
            .bind(host: "127.0.0.1", port: 0).get()
        return FakePlatform(group: group, state: state, server: server)
    }

    static func initializeChild(_ channel: any Channel, state: NIOLoopBoundBox<FakePlatformState>) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(YKCFrameDecoder()))
            try channel.pipeline.syncOperations.addHandler(FakePlatformHandler(state: state.value))
        }
    }

    func frames(code: UInt8) async -> [YKCFrame] {
        let state = self.state
        return (try? await loop.submit { state.value.received.filter { $0.code == code } }.get()) ?? []
    }

    func billReceipts(_ serial: TradeSerial) async -> Int {
        let state = self.state
        return (try? await loop.submit { state.value.billReceipts[serial] ?? 0 }.get()) ?? 0
    }

    func configure(_ body: @escaping @Sendable (FakePlatformState) -> Void) async {
        let state = self.state
        try? await loop.submit { body(state.value) }.get()
    }

    /// Sends a frame to the most recent pile connection.
    func send(_ frame: YKCFrame) async throws {
        let state = self.state
        try await loop.flatSubmit { () -> EventLoopFuture<Void> in
            guard let channel = state.value.channels.last(where: { $0.isActive }) else {
                return state.eventLoop.makeFailedFuture(SimulatedPileError.notConnected)
            }
            var buffer = channel.allocator.buffer(capacity: 64)
            frame.write(into: &buffer)
            return channel.writeAndFlush(buffer)
        }.get()
    }

    /// Closes every pile connection (the pile should reconnect).
    func closeConnections() async {
        let state = self.state
        try? await loop.flatSubmit {
            let closes = state.value.channels.map { $0.close() }
            return EventLoopFuture.andAllComplete(closes, on: state.eventLoop)
        }.get()
    }

    func shutdown() async {
        try? await server.close()
        await closeConnections()
        try? await group.shutdownGracefully()
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` passes.
    func eventually(timeout: Duration = .seconds(3), _ condition: @Sendable () async -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return await condition()
    }
}
