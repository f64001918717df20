import NIOCore
import YKC

/// Being online: the login reply, heartbeats per gun with the miss counter, the billing model
/// request until it is answered, and idle real-time data.
extension PileCore {
    func handleLoginReply(_ frame: YKCFrame, connectionID id: Int) {
        guard phase == .awaitingLogin else { return }
        var body = frame.body
        guard let reply = try? LoginReply(decoding: &body) else { return }
        loginTimer?.cancel()
        loginTimer = nil
        let latency = NIODeadline.now() - loginSentAt
        lastLoginLatency = latency
        counters?.loginLatency.record(latency)
        loginResult = reply.result
        guard reply.result == .accepted else {
            loginsRejected += 1
            counters?.loginsRejected.wrappingIncrement(ordering: .relaxed)
            close(.loginRejected)
            return
        }
        loginsAccepted += 1
        counters?.loginsAccepted.wrappingIncrement(ordering: .relaxed)
        counters?.loggedIn.wrappingIncrement(ordering: .relaxed)
        phase = .loggedIn
        loggedInThisConnection = true
        consecutiveFailures = 0
        heartbeatTimer = after(config.heartbeatInitialDelay) { self.heartbeatTick(connectionID: id) }
        if config.requestBillingModel { sendBillingModelRequest(connectionID: id) }
        if config.realtimeOnLogin {
            for g in guns.indices { sendRealtime(gun: g) }
        }
        if let interval = config.realtimeInterval {
            realtimeTimer = after(interval) { self.realtimeTick(connectionID: id) }
        }
        // Bills stored while offline go up right after login (docs/ykc/PROTOCOL-FACTS.md §5.1).
        for serial in bills.order { sendBill(serial) }
        refillBills()
        if let cycle = config.chargingCycle, guns[0].session == nil {
            let cycleNanos = max(1, cycle.sessionLength.nanoseconds + cycle.pause.nanoseconds)
            scheduleCycleSession(after: .nanoseconds(Int64.random(in: 0..<cycleNanos)))
        }
    }

    func heartbeatTick(connectionID id: Int) {
        guard id == connectionID, phase == .loggedIn else { return }
        let range = config.heartbeatScope == .perGun ? guns.indices : 0..<1
        for g in range where guns[g].unanswered > config.maxUnansweredHeartbeats {
            counters?.heartbeatTimeouts.wrappingIncrement(ordering: .relaxed)
            close(.heartbeatTimeout(gun: g + 1))
            return
        }
        for g in range {
            let sequence = nextSequence(gun: g)
            send(Heartbeat(pileId: pileID, gun: guns[g].number, gunState: .normal), sequence)
            guns[g].heartbeatsSent += 1
            guns[g].unanswered += 1
            guns[g].lastHeartbeatSequence = sequence
            counters?.heartbeatsSent.wrappingIncrement(ordering: .relaxed)
        }
        heartbeatTimer = after(config.heartbeatInterval) { self.heartbeatTick(connectionID: id) }
        notify()
    }

    func handleHeartbeatReply(_ frame: YKCFrame) {
        var body = frame.body
        guard let reply = try? HeartbeatReply(decoding: &body), let g = gunIndex(reply.gun) else { return }
        guns[g].heartbeatsAcked += 1
        guns[g].unanswered = 0
        guns[g].lastEchoedSequence = frame.sequence
        counters?.heartbeatsAcked.wrappingIncrement(ordering: .relaxed)
    }

    func sendBillingModelRequest(connectionID id: Int) {
        guard id == connectionID, phase == .loggedIn, !billingModelReceivedThisConnection else { return }
        send(BillingModelRequest(pileId: pileID), nextSequence(gun: 0))
        billingModelRequestsSent += 1
        billingModelTimer = after(config.billingModelRetryInterval) {
            self.sendBillingModelRequest(connectionID: id)
        }
    }

    func handleBillingModelReply(_ frame: YKCFrame) {
        var body = frame.body
        guard let reply = try? BillingModelReply(decoding: &body) else { return }
        billingModel = reply
        billingModelReceivedThisConnection = true
        billingModelTimer?.cancel()
        billingModelTimer = nil
        counters?.billingModelsReceived.wrappingIncrement(ordering: .relaxed)
    }

    func realtimeTick(connectionID id: Int) {
        guard id == connectionID, phase == .loggedIn, let interval = config.realtimeInterval else { return }
        for g in guns.indices where guns[g].session == nil { sendRealtime(gun: g) }
        realtimeTimer = after(interval) { self.realtimeTick(connectionID: id) }
    }

    func gunIndex(_ gun: GunNumber) -> Int? {
        let i = gun.number - 1
        return guns.indices.contains(i) ? i : nil
    }
}
