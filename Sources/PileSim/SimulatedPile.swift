import NIOCore
import NIOPosix
import YKC

/// A simulated charging pile that behaves like real YKC firmware (docs/ykc/PROTOCOL-FACTS.md §5): it
/// connects, logs in (0x01), asks for its billing model (0x09, repeated until 0x0A), heartbeats
/// per gun (0x03) and drops the link after too many unanswered ones, answers platform commands
/// echoing their sequence bytes, runs charging sessions, and re-sends bills (0x3B) until 0x40.
/// It reconnects with backoff and jitter after any drop.
///
/// All state lives in a core confined to one event loop; this handle is `Sendable` and its
/// async methods hop onto that loop. A pile keeps running until `stop()` — call it when done.
///
/// ```swift
/// let pile = try await SimulatedPile.connect(to: port, .fast(pileID: id))
/// try await pile.waitForLogin()
/// let reply = try await pile.waitForFrame(code: 0x04)
/// await pile.stop()
/// ```
public final class SimulatedPile: Sendable {
    public let config: SimulatedPileConfig
    public let target: SocketAddress
    public let eventLoop: any EventLoop
    let core: NIOLoopBoundBox<PileCore>

    public var pileID: PileID { config.pileID }

    /// A pile that will connect to `target` from `eventLoop` once `start()` is called.
    public convenience init(target: SocketAddress, config: SimulatedPileConfig, eventLoop: any EventLoop) {
        self.init(target: target, config: config, eventLoop: eventLoop, timers: nil)
    }

    /// As `init(target:config:eventLoop:)`, sharing `timers` (on `eventLoop`) with the other piles
    /// of the loop; nil gives the pile a wheel of its own.
    init(target: SocketAddress, config: SimulatedPileConfig, eventLoop: any EventLoop, timers: PileTimerWheel?) {
        self.config = config
        self.target = target
        self.eventLoop = eventLoop
        self.core = NIOLoopBoundBox.makeBoxSendingValue(
            PileCore(config: config, target: target, eventLoop: eventLoop, timers: timers), eventLoop: eventLoop)
    }

    /// Starts connecting (and, after that, keeps the pile online per its config). Idempotent.
    public func start() {
        let core = self.core
        eventLoop.execute { core.value.start() }
    }

    /// Creates a pile, starts it, and returns once its first TCP connect succeeded (login runs
    /// on in the background; use `waitForLogin`). Throws, and stops the pile, when that first
    /// connect fails.
    public static func connect(
        to port: Int, host: String = "127.0.0.1", _ config: SimulatedPileConfig,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, timeout: TimeAmount = .seconds(10)
    ) async throws -> SimulatedPile {
        let address = try SocketAddress(ipAddress: host, port: port)
        return try await connect(to: address, config, group: group, timeout: timeout)
    }

    /// As `connect(to:host:_:group:timeout:)`, to an address.
    public static func connect(
        to address: SocketAddress, _ config: SimulatedPileConfig,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, timeout: TimeAmount = .seconds(10)
    ) async throws -> SimulatedPile {
        let pile = SimulatedPile(target: address, config: config, eventLoop: group.next())
        pile.start()
        do {
            let state = try await pile.waitUntil(timeout: timeout, "first connect") {
                $0.connectionsOpened > 0 || $0.connectFailures > 0
            }
            if state.connectionsOpened == 0 {
                await pile.stop()
                throw SimulatedPileError.connectFailed(state.lastCloseReason.map { "\($0)" } ?? "unknown")
            }
        } catch {
            await pile.stop()
            throw error
        }
        return pile
    }

    // MARK: - Observing

    /// A copy of the pile's state now.
    public func state() async -> SimulatedPileState {
        let core = self.core
        return (try? await eventLoop.submit { core.value.snapshot() }.get()) ?? Self.emptyState(config)
    }

    /// The phase and last close reason only: cheap enough to poll for thousands of piles.
    public func phaseAndLastCloseReason() async -> (PilePhase, PileCloseReason?) {
        let core = self.core
        return (try? await eventLoop.submit { (core.value.phase, core.value.lastCloseReason) }.get()) ?? (.stopped, nil)
    }

    /// Waits until `predicate` holds for the pile's state (checked now and after every change)
    /// and returns that state. Throws `SimulatedPileError.timeout` with the state summary.
    @discardableResult
    public func waitUntil(
        timeout: TimeAmount = .seconds(5), _ description: String = "condition",
        _ predicate: @escaping @Sendable (SimulatedPileState) -> Bool
    ) async throws -> SimulatedPileState {
        let core = self.core
        let loop = eventLoop
        return try await loop.flatSubmit {
            let promise = loop.makePromise(of: SimulatedPileState.self)
            core.value.waitUntil(timeout: timeout, description: description, predicate: predicate, promise: promise)
            return promise.futureResult
        }.get()
    }

    /// Waits for the current connection's login to be accepted; throws `.loginRejected` on a
    /// rejection and `.timeout` if no 0x02 arrives in time.
    @discardableResult
    public func waitForLogin(timeout: TimeAmount = .seconds(5)) async throws -> SimulatedPileState {
        let state = try await waitUntil(timeout: timeout, "login") { $0.isLoggedIn || $0.loginResult == .rejected }
        if !state.isLoggedIn { throw SimulatedPileError.loginRejected }
        return state
    }

    /// Waits for the 0x02 of the current connection and returns its result, accepted or not.
    public func waitForLoginResult(timeout: TimeAmount = .seconds(5)) async throws -> LoginResult {
        let state = try await waitUntil(timeout: timeout, "login reply") { $0.loginResult != nil }
        return state.loginResult ?? .rejected
    }

    /// Returns the oldest received frame of type `code` not yet returned by this method, waiting
    /// for one if needed. Frames are kept from the moment they arrive (up to `recordFrames`), so a
    /// reply that races ahead of the call is not lost.
    public func waitForFrame(code: UInt8, timeout: TimeAmount = .seconds(5)) async throws -> YKCFrame {
        let core = self.core
        let loop = eventLoop
        return try await loop.flatSubmit {
            let promise = loop.makePromise(of: YKCFrame.self)
            core.value.waitForFrame(code: code, timeout: timeout, promise: promise)
            return promise.futureResult
        }.get()
    }

    /// Received frames still kept (the last `recordFrames`), optionally only one type; does not consume.
    public func receivedFrames(code: UInt8? = nil) async -> [YKCFrame] {
        let core = self.core
        let frames = (try? await eventLoop.submit { core.value.history }.get()) ?? []
        guard let code else { return frames }
        return frames.filter { $0.code == code }
    }

    /// Forgets kept frames, so later `waitForFrame` calls see only new ones.
    public func clearReceivedFrames() async {
        let core = self.core
        try? await eventLoop.submit {
            core.value.inbox.removeAll()
            core.value.history.removeAll()
        }.get()
    }

    // MARK: - Sending

    /// Sends a complete frame as given (its sequence and type are not touched).
    public func send(_ frame: YKCFrame) async throws {
        let core = self.core
        try await eventLoop.flatSubmit { core.value.sendFrame(frame) }.get()
    }

    /// Sends a typed message with `sequence`, or with the pile's next own sequence number
    /// (gun 1's counter), encrypted when `frameCipher` is set; returns the sequence bytes used.
    @discardableResult
    public func send<M: YKCMessageBody>(_ message: M, sequence: YKCSequence? = nil) async throws -> YKCSequence {
        let core = self.core
        return try await eventLoop.flatSubmit {
            let c = core.value
            guard c.context != nil else {
                return c.eventLoop.makeFailedFuture(SimulatedPileError.notConnected)
            }
            let seq = sequence ?? c.nextSequence(gun: 0)
            return c.sendFrame(c.sealed(message.frame(sequence: seq))).map { seq }
        }.get()
    }

    /// Sends arbitrary bytes: garbage, partial or split frames, for hostile-client tests.
    public func rawSend(_ bytes: [UInt8]) async throws {
        let core = self.core
        try await eventLoop.flatSubmit { core.value.rawSend(bytes) }.get()
    }

    /// Stops (false) or resumes (true) reading from the socket, to play a slow reader in
    /// backpressure tests. It stays in effect across reconnects.
    public func setReading(_ enabled: Bool) async {
        let core = self.core
        try? await eventLoop.submit { core.value.setReading(enabled) }.get()
    }

    // MARK: - Sessions and bills

    /// Uploads a bill now (or after the next login) and re-sends it every `billRetryInterval`
    /// until a 0x40 with its trade serial arrives or `billMaxSends` is reached.
    public func uploadBill(_ record: TransactionRecord) async throws {
        let core = self.core
        try await eventLoop.submit { try core.value.enqueueBill(record) }.get()
    }

    /// Uploads a simulated bill for `gun` (see `TransactionRecord.simulated`) and returns its trade serial.
    @discardableResult
    public func uploadBill(
        gun: Int = 1, tradeSerial: TradeSerial? = nil, energy: YKCDecimal = YKCDecimal(units: 100_000, scale: 4)
    ) async throws -> TradeSerial {
        guard let gunNumber = GunNumber(number: gun), gun >= 1, gun <= config.gunCount else {
            throw SimulatedPileError.invalidGun(gun)
        }
        let serial = tradeSerial ?? .simulated(pileID: pileID, gun: gunNumber, counter: Int.random(in: 0..<10_000))
        try await uploadBill(.simulated(pileID: pileID, gun: gunNumber, tradeSerial: serial, energy: energy))
        return serial
    }

    /// Waits until the bill with `tradeSerial` is acknowledged by a 0x40.
    public func waitForBillAck(_ tradeSerial: TradeSerial, timeout: TimeAmount = .seconds(5)) async throws {
        try await waitUntil(timeout: timeout, "0x40 for \(tradeSerial)") { $0.billsAcked.contains(tradeSerial) }
    }

    /// Sends a card start request (0x31) for `gun` and returns the platform's 0x32. On an
    /// authorised reply the gun starts charging under the reply's trade serial.
    public func requestCardStart(
        gun: Int, card: BinaryID, timeout: TimeAmount = .seconds(5)
    ) async throws -> StartRequestReply {
        let core = self.core
        let loop = eventLoop
        return try await loop.flatSubmit {
            let promise = loop.makePromise(of: StartRequestReply.self)
            core.value.requestCardStart(gun: gun - 1, card: card, timeout: timeout, promise: promise)
            return promise.futureResult
        }.get()
    }

    /// Starts a charging session locally (as if started at the pile), sending the charging 0x13.
    public func startCharging(gun: Int, tradeSerial: TradeSerial, origin: TransactionOrigin = .card) async throws {
        let core = self.core
        try await eventLoop.submit {
            let c = core.value
            guard c.guns.indices.contains(gun - 1) else { throw SimulatedPileError.invalidGun(gun) }
            c.beginSession(gun: gun - 1, tradeSerial: tradeSerial, origin: origin, card: .zero)
        }.get()
    }

    /// Ends the gun's session at the pile (e.g. the driver stopped it): idle 0x13, then the bill.
    /// Returns the session's trade serial, nil when the gun was not charging.
    @discardableResult
    public func stopCharging(gun: Int, reason: StopReason = .manualStopAtPile) async throws -> TradeSerial? {
        let core = self.core
        return try await eventLoop.submit {
            let c = core.value
            guard c.guns.indices.contains(gun - 1) else { throw SimulatedPileError.invalidGun(gun) }
            return c.endSession(gun: gun - 1, reason: reason)
        }.get()
    }

    // MARK: - Connection control

    /// Closes the current connection (reason `.requested`); the pile then reconnects per its policy.
    public func disconnect() async {
        let core = self.core
        try? await eventLoop.flatSubmit { core.value.disconnect() }.get()
    }

    /// Stops the pile for good and waits for its connection to close. Pending waits fail with `.stopped`.
    public func stop() async {
        let core = self.core
        try? await eventLoop.flatSubmit { core.value.stop() }.get()
    }

    /// Stops without waiting (for fleets shutting down thousands of piles).
    public func stopNow() {
        let core = self.core
        eventLoop.execute { _ = core.value.stop() }
    }

    /// Runs `body` on the pile's loop with its state, for fleet-level actions that must not
    /// wait (e.g. uploading a bill from a load driver). Errors are ignored.
    func withCore(_ body: @escaping @Sendable (PileCore) -> Void) {
        let core = self.core
        eventLoop.execute { body(core.value) }
    }

    static func emptyState(_ config: SimulatedPileConfig) -> SimulatedPileState {
        SimulatedPileState(
            pileID: config.pileID, phase: .stopped, isConnected: false, loginResult: nil, loginAttempts: 0,
            loginsAccepted: 0, loginsRejected: 0, loginTimeouts: 0, lastLoginLatency: nil, billingModel: nil,
            billingModelRequestsSent: 0, guns: [], framesReceived: [:], framesSent: [:], parseErrors: 0,
            pendingBills: [], billsAcked: [], billAckResults: [:], billsAbandoned: [], billSends: [:],
            startReplies: [], connectAttempts: 0, connectionsOpened: 0, connectionsClosed: 0, connectFailures: 0,
            lastCloseReason: nil, readingPaused: false)
    }
}
