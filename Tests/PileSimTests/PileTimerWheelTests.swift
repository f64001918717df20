import NIOCore
import NIOPosix
import Testing

@testable import PileSim

/// The simulator's timer wheel: the order timers run in, cancelling, and what it is for: a loop
/// with a backlog of due timers keeps reading its sockets between batches, where NIO's own
/// scheduled tasks all run before the loop polls for I/O again (docs/BENCHMARKS.md, "Cluster load").
@Suite("PileTimerWheel: simulator timers that do not starve the loop's I/O")
struct PileTimerWheelTests {
    @Test("timers run in deadline order, and timers with one deadline in the order they were set")
    func order() async throws {
        let ran = try await withLoop { loop in
        let wheel = PileTimerWheel(eventLoop: loop, batchLimit: 2)
        let ran = try await loop.submit { () -> EventLoopFuture<[Int]> in
            let done = loop.makePromise(of: [Int].self)
            let box = NIOLoopBoundBox([Int](), eventLoop: loop)
            for (i, ms) in [(0, 30), (1, 10), (2, 20), (3, 10), (4, 0), (5, 10)] {
                wheel.schedule(in: .milliseconds(Int64(ms))) {
                    box.value.append(i)
                    if box.value.count == 6 { done.succeed(box.value) }
                }
            }
            return done.futureResult
        }.get().get()
        let counts = try await loop.submit { (wheel.timersRun, wheel.count) }.get()
        #expect(counts.0 == 6)
        #expect(counts.1 == 0)
        return ran
        }
        #expect(ran == [4, 1, 3, 5, 2, 0])
    }

    @Test("a cancelled timer never runs, and the others still do")
    func cancel() async throws {
        let ran = try await withLoop { loop in
        let wheel = PileTimerWheel(eventLoop: loop)
        return try await loop.submit { () -> EventLoopFuture<[String]> in
            let done = loop.makePromise(of: [String].self)
            let box = NIOLoopBoundBox([String](), eventLoop: loop)
            let early = wheel.schedule(in: .milliseconds(5)) { box.value.append("early") }
            let late = wheel.schedule(in: .milliseconds(40)) { box.value.append("late") }
            wheel.schedule(in: .milliseconds(20)) { box.value.append("kept") }
            wheel.schedule(in: .milliseconds(60)) { done.succeed(box.value) }
            early.cancel()
            late.cancel()
            #expect(!early.isPending)
            return done.futureResult
        }.get().get()
        }
        #expect(ran == ["kept"])
    }

    /// A client on one loop with a byte waiting in its socket and a backlog of `timers` due
    /// timers that each take `spin`. Returns how many timers had run when the client read it.
    /// Runs `body` with the loop of a one-thread group, and shuts the group down after it.
    private func withLoop<T: Sendable>(_ body: (any EventLoop) async throws -> T) async throws -> T {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let result = try await body(group.next())
            try await group.shutdownGracefully()
            return result
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// A client on one loop with a byte waiting in its socket and a backlog of `timers` due
    /// timers that each take `spin`. Returns how many timers had run when the client read it.
    private func timersRunBeforeRead(timers: Int, spin: TimeAmount, useWheel: Bool) async throws -> Int {
        try await withLoop { serverLoop in
            try await withLoop { loop in
                let accepted = serverLoop.makePromise(of: (any Channel).self)
                let server = try await ServerBootstrap(group: serverLoop)
                    .childChannelInitializer { channel in
                        accepted.succeed(channel)
                        return channel.eventLoop.makeSucceededVoidFuture()
                    }
                    .bind(host: "127.0.0.1", port: 0).get()
                let ranCounter = NIOLoopBoundBox.makeBoxSendingValue(0, eventLoop: loop)
                let readAt = loop.makePromise(of: Int.self)
                let wheel = PileTimerWheel(eventLoop: loop)
                // Not reading until the timers are set, so the byte is waiting in the socket when they start.
                let client = try await ClientBootstrap(group: loop)
                    .channelOption(.autoRead, value: false)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(
                                ReadRecorder(onRead: { readAt.succeed(useWheel ? wheel.timersRun : ranCounter.value) }))
                        }
                    }
                    .connect(host: "127.0.0.1", port: server.localAddress?.port ?? 0).get()
                let child = try await accepted.futureResult.get()
                try await child.writeAndFlush(ByteBuffer(string: "x")).get()
                try await Task.sleep(for: .milliseconds(20))
                try await loop.submit {
                    for _ in 0..<timers {
                        let work = {
                            let until = NIODeadline.now() + spin
                            while NIODeadline.now() < until {}
                            ranCounter.value += 1
                        }
                        if useWheel {
                            wheel.schedule(in: .zero, work)
                        } else {
                            loop.assumeIsolated().scheduleTask(in: .zero, work)
                        }
                    }
                    client.read()
                }.get()
                let ranAtRead = try await readAt.futureResult.get()
                try await client.close()
                try await server.close()
                return ranAtRead
            }
        }
    }

    @Test("a loop behind on its timers reads its sockets between batches; with NIO's tasks it reads only after all of them")
    func ioBetweenBatches() async throws {
        let timers = 3000
        let spin = TimeAmount.microseconds(100)
        let withWheel = try await timersRunBeforeRead(timers: timers, spin: spin, useWheel: true)
        // One batch of 128, then the read (more only if this thread is held up between batches).
        #expect(withWheel >= 1 && withWheel < timers / 4, "the read waited for \(withWheel) of \(timers) timers")
        // The control: the behaviour of NIO the wheel exists for.
        let withTasks = try await timersRunBeforeRead(timers: timers, spin: spin, useWheel: false)
        #expect(withTasks == timers)
    }
}

/// Calls `onRead` at the first read.
private final class ReadRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private var onRead: (() -> Void)?

    init(onRead: @escaping () -> Void) {
        self.onRead = onRead
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        onRead?()
        onRead = nil
    }
}
