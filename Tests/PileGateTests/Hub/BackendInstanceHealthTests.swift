import Foundation
import NIOCore
@testable import PileGate
import Testing
import YKC

/// One stall is one ejection episode (issue 14.7): the failures of everything already in flight
/// belong to the episode that ejected the instance; the period grows only on a new episode.
@Suite("Backend instance health: one ejection per episode")
struct BackendInstanceHealthTests {
    let policy = BackendInstanceHealth.Policy(failuresToEject: 3, baseEjection: .seconds(5), maxEjection: .seconds(300))

    @Test("a burst of expired in-flight events ejects once, for the base period")
    func burstEjectsOnce() {
        var h = BackendInstanceHealth()
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        // 256 events sent over the first second, all expiring together 10 s later.
        var periods: [TimeAmount] = []
        for i in 0..<256 {
            let sent = t0 + .milliseconds(Int64(i * 4))
            if let p = h.failed(sentAt: sent, now: t0 + .seconds(11), policy: policy) { periods.append(p) }
        }
        #expect(periods == [.seconds(5)])
        #expect(h.ejections == 1)
        #expect(h.isEjected(at: t0 + .seconds(15)))
        #expect(!h.isEjected(at: t0 + .seconds(16)))
        // Stragglers of the same episode expiring after the ejection ended still do not count.
        for i in 0..<10 {
            #expect(h.failed(sentAt: t0 + .milliseconds(Int64(i)), now: t0 + .seconds(17), policy: policy) == nil)
        }
        #expect(h.ejections == 1 && h.consecutiveFailures == 0)
    }

    @Test("a new episode on work given after coming back doubles the period, up to the cap; a success ends a streak")
    func repeatedEpisodesGrow() {
        var h = BackendInstanceHealth()
        var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var periods: [TimeAmount] = []
        for _ in 0..<9 {
            for _ in 0..<3 {
                now = now + .milliseconds(1)
                if let p = h.failed(sentAt: now, now: now, policy: policy) { periods.append(p) }
            }
            now = now + (periods.last ?? .zero)
        }
        #expect(periods.map { $0.nanoseconds / 1_000_000_000 } == [5, 10, 20, 40, 80, 160, 300, 300, 300])
        // Two failures, a success, two failures: no ejection.
        var g = BackendInstanceHealth()
        for i in 0..<2 { _ = g.failed(sentAt: now + .milliseconds(Int64(i)), now: now, policy: policy) }
        g.succeeded()
        for i in 0..<2 { #expect(g.failed(sentAt: now + .milliseconds(Int64(i)), now: now, policy: policy) == nil) }
        #expect(g.ejections == 0)
        #expect(BackendInstanceHealth.period(after: 10_000, policy: policy) == .seconds(300))
    }

    private struct Event: Identifiable, Equatable {
        var id: Int
    }

    @Test("credit: at most maxInFlight outstanding, a bounded queue, an ack promotes the oldest waiting")
    func credit() {
        var c = BackendInstanceCredit<Event>(maxInFlight: 2)
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect(c.enqueue(Event(id: 1), queueLimit: 2) == .sent)
        #expect(c.enqueue(Event(id: 2), queueLimit: 2) == .sent)
        #expect(c.enqueue(Event(id: 3), queueLimit: 2) == .queued)
        #expect(c.enqueue(Event(id: 4), queueLimit: 2) == .queued)
        #expect(c.enqueue(Event(id: 5), queueLimit: 2) == .overflow)
        #expect(c.takeReady(now: t0) == [Event(id: 1), Event(id: 2)])
        #expect(c.takeReady(now: t0) == [])
        let (unknown, none) = c.ack(99)
        #expect(unknown == nil && !none)
        let (acked, promoted) = c.ack(2)
        #expect(acked?.item == Event(id: 2) && promoted)
        #expect(c.takeReady(now: t0 + .seconds(5)) == [Event(id: 3)])
        // Event 1 (sent at t0) expires at a 3 s timeout; event 3 (sent at t0 + 5 s) does not.
        #expect(c.expired(timeout: .seconds(3), now: t0 + .seconds(6)).map(\.item) == [Event(id: 1)])
        // Disconnect: in flight by send time, then ready, then waiting.
        #expect(c.takeAll() == [Event(id: 1), Event(id: 3), Event(id: 4)])
        #expect(c.inFlight.isEmpty && c.waiting.isEmpty && c.ready.isEmpty)
    }

    @Test("a briefly stalled instance is ejected once over real sockets; /v1/hub and /metrics agree; it comes back")
    func briefStallOverSockets() async throws {
        try await withHub(hub: {
            $0.ackTimeout = 1
            $0.failuresToEject = 3
            $0.baseEjection = 1
            $0.maxEjection = 300
        }) { gw, hub in
            let backend = try await TestBackend.connect(apiPort: gw.apiPort, autoAck: false)
            try await backend.subscribe(service: "s", instance: "stall", events: ["heartbeat"])
            let raw = try await RawClient.connect(port: gw.pilePort)
            try await raw.send(Frames.login("55010600005001"))
            #expect(await gw.eventually { Frames.parse(raw.receivedBytes).contains { $0.code == 0x02 } })
            // 60 events in flight, none acked: they all expire together, within the 1 s ack timeout.
            try await raw.send((0..<60).flatMap { Frames.heartbeat("55010600005001", gun: 1, sequence: UInt16($0 + 1)).bytes })
            let deadline = Date().addingTimeInterval(5)
            while backend.events.count < 60 && Date() < deadline { try await Task.sleep(nanoseconds: 20_000_000) }
            let received = backend.events.count
            #expect(received >= 60, "events: \(received), stats: \(hub.statsDocument())")
            #expect(await gw.eventually { hub.statsDocument().instances.first?.state == "ejected" })
            // The backend recovers right away.
            backend.autoAck.withLockedValue { $0 = true }
            try await Task.sleep(nanoseconds: 600_000_000)
            let status = hub.statsDocument().instances.first
            #expect(status?.ejections == 1)
            #expect(hub.statsDocument().lanes[""]?["s"]?.ejections == 1)
            let metrics = try await gw.http("GET", "/metrics").body
            #expect(metrics.contains(#"pilegate_hub_ejections_total{lane="base",service="s"} 1"#), "\(metrics.split(separator: "\n").filter { $0.contains("ejections") })")
            // Back after the 1 s period: new events reach it and are acked.
            #expect(await gw.eventually(timeout: 3) { hub.statsDocument().instances.first?.state == "healthy" })
            let before = backend.events.count
            try await raw.send(Frames.heartbeat("55010600005001", gun: 1, sequence: 999))
            try await backend.waitFor("event after recovery") { _ in backend.events.count > before }
            try await Task.sleep(nanoseconds: 500_000_000)
            #expect(hub.statsDocument().instances.first?.ejections == 1)
            await raw.close()
            await backend.close()
        }
    }
}
