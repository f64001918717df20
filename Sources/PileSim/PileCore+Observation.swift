import NIOCore
import YKC

/// What tests and tools see: recorded frames, waits for a frame or a state, and the snapshot.
extension PileCore {
    func record(_ frame: YKCFrame) {
        if let i = frameWaiters.firstIndex(where: { $0.code == frame.code }) {
            let w = frameWaiters.remove(at: i)
            w.timer.cancel()
            w.promise.succeed(frame)
        } else if config.recordFrames > 0 {
            inbox.append(frame)
            if inbox.count > config.recordFrames { inbox.removeFirst() }
        }
        if config.recordFrames > 0 {
            history.append(frame)
            if history.count > config.recordFrames { history.removeFirst() }
        }
    }

    func waitForFrame(code: UInt8, timeout: TimeAmount, promise: EventLoopPromise<YKCFrame>) {
        if let i = inbox.firstIndex(where: { $0.code == code }) {
            promise.succeed(inbox.remove(at: i))
            return
        }
        guard phase != .stopped else { return promise.fail(SimulatedPileError.stopped) }
        let id = nextWaiterID
        nextWaiterID += 1
        let timer = after(timeout) {
            guard let i = self.frameWaiters.firstIndex(where: { $0.id == id }) else { return }
            let w = self.frameWaiters.remove(at: i)
            w.promise.fail(
                SimulatedPileError.timeout("frame 0x\(String(code, radix: 16)); \(self.snapshot().summary)"))
        }
        frameWaiters.append(FrameWaiter(id: id, code: code, promise: promise, timer: timer))
    }

    func waitUntil(
        timeout: TimeAmount, description: String, predicate: @escaping @Sendable (SimulatedPileState) -> Bool,
        promise: EventLoopPromise<SimulatedPileState>
    ) {
        let state = snapshot()
        if predicate(state) { return promise.succeed(state) }
        guard phase != .stopped else { return promise.fail(SimulatedPileError.stopped) }
        let id = nextWaiterID
        nextWaiterID += 1
        let timer = after(timeout) {
            guard let i = self.stateWaiters.firstIndex(where: { $0.id == id }) else { return }
            let w = self.stateWaiters.remove(at: i)
            w.promise.fail(SimulatedPileError.timeout("\(description); \(self.snapshot().summary)"))
        }
        stateWaiters.append(StateWaiter(id: id, predicate: predicate, promise: promise, timer: timer))
    }

    /// Re-checks state waiters; costs nothing when none are registered (the load path).
    func notify() {
        guard !stateWaiters.isEmpty else { return }
        let state = snapshot()
        var i = 0
        while i < stateWaiters.count {
            if stateWaiters[i].predicate(state) {
                let w = stateWaiters.remove(at: i)
                w.timer.cancel()
                w.promise.succeed(state)
            } else {
                i += 1
            }
        }
    }

    func snapshot() -> SimulatedPileState {
        var state = SimulatedPileState(
            pileID: pileID, phase: phase, isConnected: context != nil, loginResult: loginResult,
            loginAttempts: loginAttempts, loginsAccepted: loginsAccepted, loginsRejected: loginsRejected,
            loginTimeouts: loginTimeouts, lastLoginLatency: lastLoginLatency, billingModel: billingModel,
            billingModelRequestsSent: billingModelRequestsSent,
            guns: guns.map {
                GunSnapshot(
                    gun: $0.number.number, heartbeatsSent: $0.heartbeatsSent, heartbeatsAcked: $0.heartbeatsAcked,
                    unansweredHeartbeats: $0.unanswered, lastHeartbeatSequence: $0.lastHeartbeatSequence,
                    lastEchoedSequence: $0.lastEchoedSequence, chargingTradeSerial: $0.session?.tradeSerial,
                    sessionEnergy: YKCDecimal(units: Int64($0.session?.energyRaw ?? 0), scale: 4))
            },
            framesReceived: framesReceived, framesSent: framesSent, parseErrors: parseErrors,
            pendingBills: bills.order, billsAcked: bills.acked, billAckResults: bills.ackResults,
            billsAbandoned: bills.abandoned, billSends: bills.sends, startReplies: startReplies,
            connectAttempts: connectAttempts, connectionsOpened: connectionsOpened,
            connectionsClosed: connectionsClosed, connectFailures: connectFailures, lastCloseReason: lastCloseReason,
            readingPaused: readingPaused)
        state.framesDecrypted = framesDecrypted
        state.undecryptableFrames = undecryptableFrames
        return state
    }
}
