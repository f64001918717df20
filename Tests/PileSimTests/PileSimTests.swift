import NIOCore
import NIOPosix
import PileSim
import Testing
import YKC

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
