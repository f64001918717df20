import Foundation

/// What the outbox knows of its services in memory, apart from SQLite: the durable services and
/// the event types they take, their presence (instances connected, last seen), the events
/// handed to an instance and not yet acked (in flight), and each service's floor. Pure state:
/// the outbox keeps it under one lock and does the SQL its answers call for.
///
/// - In flight: an event handed out is not handed out again until it is acked or its
///   redelivery time passes; an acked one stays busy until the commit that records its mark.
/// - Floor: every event with seq <= floor has been acked by the service and its mark committed,
///   so delivery scans and pending counts start above it (without it each round re-checks every
///   delivered row still retained). In memory only: 0 after a restart, raised by the first
///   delivery round. `epoch` changes whenever a floor is lowered (replay, new types), so a round
///   that read before that does not raise the floor past events that became pending again.
struct OutboxDeliveryState: Sendable {
    struct InFlight: Sendable {
        var seq: Int64
        var until: Date
        /// Acked, its progress mark not committed yet: it stays busy (is not handed out again)
        /// until the commit that records it, and never expires.
        var acked = false
    }

    struct Presence: Sendable {
        var connected = 0
        var lastSeen: Date
    }

    /// A service's delivery progress waiting for the next commit.
    struct Mark: Sendable {
        var service: String
        var seq: Int64
        var id: String
    }

    /// What a delivery round for one service starts from.
    struct Round: Sendable {
        /// Seqs in flight: not handed out again this round.
        var busy: Set<Int64>
        /// Hand-outs that expired unacked (they become eligible again).
        var redelivered: Int
        var floor: Int64
        var epoch: Int
    }

    /// Known (durable) services and the event types they subscribed to ("*" = all).
    private(set) var services: [String: Set<String>]
    private(set) var presence: [String: Presence]
    private var inFlight: [String: [String: InFlight]] = [:]
    private(set) var floors: [String: Int64] = [:]
    private var epoch = 0

    /// The state recovered from SQLite: `lastSeen` per service; a known service never seen
    /// counts as seen `now`.
    init(services: [String: Set<String>], lastSeen: [String: Date], now: Date) {
        self.services = services
        var presence: [String: Presence] = [:]
        for (service, seen) in lastSeen { presence[service] = Presence(lastSeen: seen) }
        for service in services.keys where presence[service] == nil { presence[service] = Presence(lastSeen: now) }
        self.presence = presence
    }

    // MARK: services

    /// An instance subscribed durably to `types` (already limited to the durable ones): it is
    /// present, and the types it adds to its service are returned (to persist). New types lower
    /// the floor: events below it may be pending for them.
    mutating func subscribed(_ service: String, types: Set<String>, now: Date) -> Set<String> {
        presence[service, default: Presence(lastSeen: now)].connected += 1
        presence[service]?.lastSeen = now
        let added = types.subtracting(services[service] ?? [])
        services[service, default: []].formUnion(types)
        if !added.isEmpty {
            floors[service] = nil
            epoch += 1
        }
        return added
    }

    /// An instance of `service` left; true when it was the last one connected.
    mutating func instanceLeft(_ service: String, now: Date) -> Bool {
        guard var e = presence[service], e.connected > 0 else { return false }
        e.connected -= 1
        e.lastSeen = now
        presence[service] = e
        return e.connected == 0
    }

    func isDurable(_ service: String) -> Bool { services[service] != nil }

    /// Instances of `service` connected now (0 when unknown).
    func connected(_ service: String) -> Int { presence[service]?.connected ?? 0 }

    /// Marks every connected service as seen `now`; returns every service's last sighting.
    mutating func sightings(now: Date) -> [(service: String, lastSeen: Date)] {
        for (k, v) in presence where v.connected > 0 { presence[k]?.lastSeen = now }
        return presence.map { ($0.key, $0.value.lastSeen) }
    }

    /// Services with no instance connected and not seen since `cutoff`.
    func absent(since cutoff: Date) -> [String] {
        presence.filter { $0.value.connected == 0 && $0.value.lastSeen < cutoff }.map(\.key).sorted()
    }

    /// Forgets `service` entirely; true when it was known.
    mutating func forget(_ service: String) -> Bool {
        let known = services.removeValue(forKey: service) != nil
        presence[service] = nil
        inFlight[service] = nil
        floors[service] = nil
        return known
    }

    // MARK: delivery

    /// Starts a round for `service` at `now`: expired hand-outs are dropped (eligible again).
    mutating func beginRound(_ service: String, now: Date) -> Round {
        var entries = inFlight[service] ?? [:]
        let expired = entries.filter { !$0.value.acked && $0.value.until <= now }
        for k in expired.keys { entries[k] = nil }
        inFlight[service] = entries
        return Round(busy: Set(entries.values.map(\.seq)), redelivered: expired.count, floor: floors[service] ?? 0, epoch: epoch)
    }

    /// A round read rows starting at `firstSeq`: everything below it has been acked and
    /// recorded, unless a floor was lowered since the round began (`epoch` changed).
    mutating func raiseFloor(_ service: String, below firstSeq: Int64, readAt round: Round) {
        guard epoch == round.epoch else { return }
        floors[service] = max(round.floor, firstSeq - 1)
    }

    mutating func handOut(_ service: String, id: String, seq: Int64, until: Date) {
        inFlight[service, default: [:]][id] = InFlight(seq: seq, until: until)
    }

    /// A hand-out that found no instance: the event waits.
    mutating func handBack(_ service: String, id: String) {
        inFlight[service]?[id] = nil
    }

    /// An instance of `service` acked `id`: the mark to commit, or nil when it was not in
    /// flight (late, duplicate, or not an outbox event).
    mutating func acked(id: String, service: String) -> Mark? {
        guard var f = inFlight[service]?[id], !f.acked else { return nil }
        f.acked = true
        inFlight[service]?[id] = f
        return Mark(service: service, seq: f.seq, id: id)
    }

    /// The marks are committed: their events leave the in-flight set.
    mutating func recorded(_ marks: [Mark]) {
        for mark in marks where inFlight[mark.service]?[mark.id]?.acked == true {
            inFlight[mark.service]?[mark.id] = nil
        }
    }

    func isInFlight(id: String, service: String) -> Bool {
        inFlight[service]?[id].map { !$0.acked } ?? false
    }

    /// `service`'s progress from `from` on was forgotten: its floor drops below it.
    mutating func replayed(_ service: String, from: Int64) {
        if let floor = floors[service], floor >= from { floors[service] = max(0, from - 1) }
        epoch += 1
    }
}
