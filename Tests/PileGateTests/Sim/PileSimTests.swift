import Foundation
import NIOCore
import NIOPosix
import PileSim
import Testing
import YKC

// MARK: - A tiny fake platform

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

// MARK: - Tests

@Suite("PileSim against a fake platform")
struct PileSimTests {
    static let pileID = PileID("32010600019236") ?? PileID(raw: 0)

    /// Fast timers; no reconnect unless a test asks for it.
    static func config(guns: Int = 2) -> SimulatedPileConfig {
        SimulatedPileConfig.fast(pileID: pileID, gunCount: guns)
    }

    @Test("logs in, then asks for the billing model until it gets it")
    func login() async throws {
        let platform = try await FakePlatform.start()
        let pile = try await SimulatedPile.connect(to: platform.port, Self.config())
        let state = try await pile.waitForLogin()
        #expect(state.loginsAccepted == 1)
        #expect(state.loginResult == .accepted)

        let withModel = try await pile.waitUntil { $0.billingModel != nil }
        #expect(withModel.billingModel?.billingModel == "0001")

        let logins = await platform.frames(code: 0x01)
        #expect(logins.count == 1)
        if case .login(let login)? = logins.first.map(YKCMessage.decode) {
            #expect(login.pileId == Self.pileID)
            #expect(login.gunCount == 2)
            #expect(login.protocolVersion == 16)
        } else {
            Issue.record("first frame is not a login")
        }
        #expect(await platform.frames(code: 0x09).count >= 1)
        await pile.stop()
        await platform.shutdown()
    }

    @Test("both guns heartbeat on their own sequence counters and get them echoed")
    func heartbeatsPerGun() async throws {
        let platform = try await FakePlatform.start()
        let pile = try await SimulatedPile.connect(to: platform.port, Self.config(guns: 2))
        try await pile.waitForLogin()
        let state = try await pile.waitUntil(timeout: .seconds(3), "two acked heartbeats per gun") { s in
            s.guns.count == 2
                && s.guns.allSatisfy {
                    $0.heartbeatsAcked >= 2 && $0.lastEchoedSequence != nil
                        && $0.lastEchoedSequence == $0.lastHeartbeatSequence
                }
        }
        for gun in state.guns {
            #expect(gun.unansweredHeartbeats == 0)
        }
        let beats = await platform.frames(code: 0x03)
        var gunsSeen = Set<Int>()
        for frame in beats {
            if case .heartbeat(let hb) = YKCMessage.decode(frame) { gunsSeen.insert(hb.gun.number) }
        }
        #expect(gunsSeen == [1, 2])
        // Per-gun counters: gun 2's first heartbeat is its first frame, so it carries sequence 0.
        let gun2First = beats.first {
            if case .heartbeat(let hb) = YKCMessage.decode($0) { return hb.gun.number == 2 }
            return false
        }
        #expect(gun2First?.sequence == YKCSequence(counter: 0))
        let replies = try await pile.waitForFrame(code: 0x04)
        #expect(replies.code == 0x04)
        await pile.stop()
        await platform.shutdown()
    }

    @Test("reconnects and logs in again after the platform closes the connection")
    func reconnectAfterServerClose() async throws {
        let platform = try await FakePlatform.start()
        let pile = try await SimulatedPile.connect(to: platform.port, Self.config())
        try await pile.waitForLogin()
        await platform.closeConnections()
        let state = try await pile.waitUntil(timeout: .seconds(3), "second login") { $0.loginsAccepted >= 2 }
        #expect(state.connectionsClosed >= 1)
        #expect(state.connectionsOpened >= 2)
        #expect(state.lastCloseReason == .peerClosed)
        #expect(await platform.frames(code: 0x01).count >= 2)
        await pile.stop()
        await platform.shutdown()
    }

    @Test("answers a reboot command (0x92) with 0x91 echoing the sequence bytes")
    func commandEchoesSequence() async throws {
        let platform = try await FakePlatform.start()
        let pile = try await SimulatedPile.connect(to: platform.port, Self.config())
        try await pile.waitForLogin()
        let sequence = YKCSequence(0x12, 0x34)
        try await platform.send(Reboot(pileId: Self.pileID, when: .immediately).frame(sequence: sequence))
        let answered = await platform.eventually { await !platform.frames(code: 0x91).isEmpty }
        #expect(answered)
        let reply = await platform.frames(code: 0x91).first
        #expect(reply?.sequence == sequence)
        if case .rebootReply(let r)? = reply.map(YKCMessage.decode) {
            #expect(r.pileId == Self.pileID)
            #expect(r.result == .succeeded)
        } else {
            Issue.record("0x91 did not decode")
        }
        // The pile saw the command too.
        let command = try await pile.waitForFrame(code: 0x92)
        #expect(command.sequence == sequence)
        await pile.stop()
        await platform.shutdown()
    }

    @Test("re-sends a bill until 0x40 arrives")
    func billResentUntilAcked() async throws {
        let platform = try await FakePlatform.start { $0.ackBillOnReceipt = 3 }
        let pile = try await SimulatedPile.connect(to: platform.port, Self.config())
        try await pile.waitForLogin()
        let serial = try await pile.uploadBill(gun: 1)
        try await pile.waitForBillAck(serial, timeout: .seconds(3))
        let state = await pile.state()
        #expect(state.billsAcked.contains(serial))
        #expect(state.pendingBills.isEmpty)
        #expect(state.billSends[serial] == 3)
        #expect(state.billAckResults[serial] == .accepted)
        #expect(await platform.billReceipts(serial) == 3)
        await pile.stop()
        await platform.shutdown()
    }

    @Test("drops the link after more than 3 unanswered heartbeats")
    func heartbeatTimeout() async throws {
        let platform = try await FakePlatform.start { $0.answerHeartbeats = false }
        var config = Self.config(guns: 1)
        config.reconnect = .never
        let pile = try await SimulatedPile.connect(to: platform.port, config)
        try await pile.waitForLogin()
        let state = try await pile.waitUntil(timeout: .seconds(3), "heartbeat timeout") { $0.connectionsClosed >= 1 }
        #expect(state.lastCloseReason == .heartbeatTimeout(gun: 1))
        #expect(state.phase == .disconnected)
        #expect(state.gun(1)?.heartbeatsSent == 4)
        await pile.stop()
        await platform.shutdown()
    }

    @Test("a rejected login surfaces as loginRejected")
    func loginRejected() async throws {
        let platform = try await FakePlatform.start { $0.loginResult = .rejected }
        var config = Self.config()
        config.reconnect = .never
        let pile = try await SimulatedPile.connect(to: platform.port, config)
        await #expect(throws: SimulatedPileError.self) { try await pile.waitForLogin() }
        let state = try await pile.waitUntil { $0.connectionsClosed >= 1 }
        #expect(state.loginsRejected == 1)
        #expect(state.lastCloseReason == .loginRejected)
        await pile.stop()
        await platform.shutdown()
    }

    @Test("remote start and stop: 0x33, charging 0x13, 0x35, then a bill")
    func remoteStartStop() async throws {
        let platform = try await FakePlatform.start()
        let pile = try await SimulatedPile.connect(to: platform.port, Self.config())
        try await pile.waitForLogin()
        let serial = TradeSerial("32010600019236012501011200000042") ?? .zero
        try await platform.send(
            RemoteStart(
                tradeSerial: serial, pileId: Self.pileID, gun: 2, logicalCardNumber: "0000001000000573",
                physicalCardNumber: .zero, balance: YKCDecimal(units: 10_000, scale: 2)
            ).frame(sequence: YKCSequence(0x00, 0x07)))
        let charging = try await pile.waitUntil { $0.gun(2)?.chargingTradeSerial == serial }
        #expect(charging.gun(2)?.isCharging == true)
        #expect(await platform.eventually { await !platform.frames(code: 0x33).isEmpty })
        let startReply = await platform.frames(code: 0x33).first
        #expect(startReply?.sequence == YKCSequence(0x00, 0x07))
        if case .remoteStartReply(let r)? = startReply.map(YKCMessage.decode) {
            #expect(r.result == .started)
            #expect(r.tradeSerial == serial)
        } else {
            Issue.record("0x33 did not decode")
        }
        let chargingFrames = await platform.frames(code: 0x13).filter {
            if case .realtimeData(let d) = YKCMessage.decode($0) { return d.status == .charging }
            return false
        }
        #expect(!chargingFrames.isEmpty)

        try await platform.send(RemoteStop(pileId: Self.pileID, gun: 2).frame(sequence: YKCSequence(0x00, 0x08)))
        try await pile.waitForBillAck(serial)
        #expect(await platform.eventually { await !platform.frames(code: 0x35).isEmpty })
        #expect(await platform.frames(code: 0x35).first?.sequence == YKCSequence(0x00, 0x08))
        // At least once: under load the 0.2 s retry may fire before the ack lands.
        #expect(await platform.billReceipts(serial) >= 1)
        await pile.stop()
        await platform.shutdown()
    }

    @Test("a card start (0x31) gets its 0x32 and starts charging")
    func cardStart() async throws {
        let platform = try await FakePlatform.start()
        let pile = try await SimulatedPile.connect(to: platform.port, Self.config())
        try await pile.waitForLogin()
        let reply = try await pile.requestCardStart(gun: 1, card: BinaryID(raw: 0xD14B_0A54))
        #expect(reply.authResult == .succeeded)
        let state = try await pile.waitUntil { $0.gun(1)?.isCharging == true }
        #expect(state.gun(1)?.chargingTradeSerial == reply.tradeSerial)
        await pile.stop()
        await platform.shutdown()
    }

    @Test("rawSend delivers garbage and split frames as given")
    func rawSendGarbageAndSplitFrame() async throws {
        let platform = try await FakePlatform.start()
        // No periodic heartbeats: one written between the two halves would split the frame.
        var config = Self.config()
        config.heartbeatInterval = .seconds(60)
        let pile = try await SimulatedPile.connect(to: platform.port, config)
        try await pile.waitForLogin()
        let frame = Reboot(pileId: Self.pileID, when: .immediately).frame(sequence: YKCSequence(0, 9)).bytes
        // Garbage, then one frame in two writes: the platform must still get it whole.
        try await pile.rawSend([0x00, 0xFF, 0x13])
        try await pile.rawSend(Array(frame.prefix(5)))
        try await pile.rawSend(Array(frame.dropFirst(5)))
        #expect(await platform.eventually { await !platform.frames(code: 0x92).isEmpty })
        await pile.stop()
        await platform.shutdown()
    }

    @Test("a paused reader answers nothing until reading resumes")
    func pausedReading() async throws {
        let platform = try await FakePlatform.start()
        var config = Self.config()
        config.heartbeatInterval = .seconds(10)
        let pile = try await SimulatedPile.connect(to: platform.port, config)
        try await pile.waitForLogin()
        await pile.setReading(false)
        try await platform.send(Reboot(pileId: Self.pileID, when: .immediately).frame(sequence: YKCSequence(0, 1)))
        try await Task.sleep(for: .milliseconds(200))
        #expect(await platform.frames(code: 0x91).isEmpty)
        #expect(await pile.state().readingPaused)
        await pile.setReading(true)
        #expect(await platform.eventually { await platform.frames(code: 0x91).count == 1 })
        await pile.stop()
        await platform.shutdown()
    }

    @Test("a small fleet logs in over two source addresses")
    func fleet() async throws {
        let platform = try await FakePlatform.start()
        var config = PileFleetConfig(
            target: try SocketAddress(ipAddress: "127.0.0.1", port: platform.port), pileCount: 20, gunCount: 2)
        config.sourceAddressCount = 2
        config.connectRate = nil
        config.template.heartbeatInterval = .milliseconds(200)
        let fleet = try PileFleet(config: config, group: MultiThreadedEventLoopGroup.singleton)
        await fleet.start()
        let allIn = await platform.eventually { fleet.counters.snapshot().loggedIn == 20 }
        #expect(allIn)
        let acked = await platform.eventually { fleet.counters.snapshot().heartbeatsAcked >= 40 }
        #expect(acked)
        let snap = fleet.counters.snapshot()
        #expect(snap.loginsAccepted == 20)
        #expect(snap.loginLatency.count == 20)
        await fleet.stop()
        #expect(fleet.counters.snapshot().connected == 0)
        await platform.shutdown()
    }
}

/// Scale check, off by default: `PILESIM_SCALE_PILES=10000 swift test --filter PileSimScale`
/// runs that many 2-gun piles against the fake platform and prints the process's memory, so the
/// per-pile cost can be read off (it includes the fake platform's side of each connection).
@Suite("PileSim scale check")
struct PileSimScale {
    static let piles = Int(ProcessInfoShim.environment("PILESIM_SCALE_PILES") ?? "") ?? 0

    @Test(.enabled(if: piles > 0))
    func manyPiles() async throws {
        let platform = try await FakePlatform.start()
        let before = ProcessInfoShim.residentKB()
        var config = PileFleetConfig(
            target: try SocketAddress(ipAddress: "127.0.0.1", port: platform.port), pileCount: Self.piles, gunCount: 2)
        config.sourceAddressCount = 4
        config.connectRate = 5000
        let fleet = try PileFleet(config: config, group: MultiThreadedEventLoopGroup.singleton)
        let start = ContinuousClock.now
        await fleet.start()
        let allIn = await platform.eventually(timeout: .seconds(60)) {
            fleet.counters.snapshot().loggedIn == Self.piles
        }
        let elapsed = ContinuousClock.now - start
        let after = ProcessInfoShim.residentKB()
        let snap = fleet.counters.snapshot()
        print(
            "scale: \(Self.piles) piles logged in=\(snap.loggedIn) in \(elapsed); RSS \(before) KB -> \(after) KB, "
                + "\((after - before) * 1024 / max(Self.piles, 1)) B per pile (pile + fake platform side); "
                + "login p50 \(snap.loginLatency.percentileMs(0.5) ?? -1) ms p99 \(snap.loginLatency.percentileMs(0.99) ?? -1) ms")
        #expect(allIn)
        await fleet.stop()
        await platform.shutdown()
    }
}

enum ProcessInfoShim {
    static func environment(_ name: String) -> String? {
        ProcessInfo.processInfo.environment[name]
    }

    /// VmRSS from /proc/self/status (Linux); 0 elsewhere.
    static func residentKB() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        return 0
    }
}
