import Atomics
import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import YKC

/// The embedded backend hub: backends subscribe over WebSocket (`GET /v1/events`), every pile
/// frame and session change becomes a JSON event routed by lane, pile requests that need a
/// business answer are asked of backends with a fallback, and backends send commands to piles.
///
/// Routing (docs/DESIGN.md, Lanes): for each service subscribed to an event type, one healthy instance
/// of that service in the session's lane, else its base-lane instances (a counted fallback); a
/// base-lane session never reaches a lane instance. Within the candidates, weighted rendezvous
/// hashing on the pile id keeps one pile on one instance (so its events stay in order) while the
/// set is stable, and lets a warming instance's share rise smoothly. Failing or slow instances
/// are ejected for a growing period; draining ones get no new work.
public final class BackendHub: GatewayEventSink {
    public let config: HubConfiguration
    let ejectionPolicy: BackendInstanceHealth.Policy
    let logger: Logger
    /// The lane decider and rule version, kept in a struct: a closure stored directly as a generic
    /// box's value is re-abstracted on every inout access (`withLockedValue { $0 }`), and the
    /// write-back wraps it in two more thunks each call — per login and per frame that grew
    /// without bound and made the gateway quadratic (found by scripts/bench-hub.sh).
    private struct LaneSource: Sendable {
        var decide: @Sendable (Login, String) -> String
        var version: @Sendable () -> Int
    }
    private let laneSource: NIOLockedValueBox<LaneSource>
    private var laneDecider: @Sendable (Login, String) -> String { laneSource.withLockedValue { $0.decide } }
    /// The gateway's API credentials: commands a backend's token does not allow are counted there.
    let auth: APIAuthenticator
    /// The gateway's event loops (promises of queued commands' stored events, remote instances).
    let group: any EventLoopGroup
    /// Instances by service: this node's sockets, and in a cluster the other nodes' too
    /// (`BackendInstance.node`), all candidates of the one router.
    let instances = NIOLockedValueBox<[String: [BackendInstance]]>([:])
    /// Told when this node's own instances change (subscribe, leave, drain, ejection), so the
    /// cluster relay advertises them at once rather than at its next periodic advertisement.
    /// Set by `ClusterEventRelay` while it runs: the relay is built with this hub (it routes
    /// other nodes' events here), so it can only reach back after both exist.
    let localInstancesChanged = NIOLockedValueBox<Callback<@Sendable () -> Void>?>(nil)
    /// In a cluster, asks the node that sent an event for its reply (`ClusterEventRelay`): nil
    /// when the event is not another node's. Set and cleared by the relay while it is linked to
    /// the cluster (a cycle, as above).
    let replyForwarder = NIOLockedValueBox<Callback<@Sendable (String, JSONValue) async -> ReplyOutcome?>?>(nil)
    /// Event names some instance subscribed to, for the per-frame `wants` check (lock-free read).
    let wanted = NIOLockedValueBox<WantedSet>(WantedSet())
    private let traffic = NIOLockedValueBox<[RouteKey: BackendLaneTraffic]>([:])
    /// Events waiting for a backend's reply, with the promise the answer completes.
    private let pendingReplies = NIOLockedValueBox(BackendPendingReplies<EventLoopPromise<YKCMessage?>>())
    private let eventCounter = ManagedAtomic<UInt64>(0)
    /// Sessions whose `pile_offline` a cluster takeover waits to see acknowledged.
    let deliveryWatches = BackendDeliveryWatches()
    private let instanceCounter = ManagedAtomic<UInt64>(0)
    private let bootTag: String
    /// What every event envelope repeats (node, event-id prefix, the piles' UTC offset).
    let envelope: BackendEventEnvelope
    /// Picks the instance of each service for an event (pure; lanes and rendezvous hashing).
    let router: BackendRouter
    let undeliverable = ManagedAtomic(0)
    /// Commands refused because their backend socket had `maxCommandsPerSocket` running.
    let commandsRefusedPerSocket = ManagedAtomic(0)
    /// Billing models seen going to piles, in the registry's database (nil when it cannot open).
    let billingModels: BillingModelCache?
    /// Commands to piles (they look sessions up in the gateway's session directory).
    let commands: BackendCommands
    /// The offline authorization of starts no backend answers (`BackendHub+OfflineAuthorization`);
    /// nil when its cache cannot open in the registry's database.
    let offlineAuthorizer: OfflineAuthorizer?
    /// Commands waiting for offline piles (`BackendHub+QueuedCommands.swift`); nil when their
    /// store cannot open. Set once, at the end of `init`: they publish their final events
    /// through this hub, so they cannot exist before it (the only box set after the stored
    /// properties, never replaced).
    private let queuedCommandsBox = NIOLockedValueBox<QueuedCommands?>(nil)
    var queuedCommands: QueuedCommands? { queuedCommandsBox.withLockedValue { $0 } }

    struct WantedSet: Sendable {
        var all = false
        var names: Set<String> = []
        func contains(_ n: String) -> Bool { all || names.contains(n) }
    }

    /// Builds the hub complete, with what it uses of the gateway: the gateway itself is built
    /// after it, with the hub as its event sink, its routes, stats and `services`.
    ///
    /// - Parameters:
    ///   - config: the hub's settings.
    ///   - gateway: the gateway's configuration: its node id and the piles' UTC offset go in every
    ///     envelope; the offline authorization starts with its policy (`register(on:)` follows
    ///     reloads).
    ///   - stores: the gateway's stores (`GatewayStores`): billing models, queued commands and the
    ///     offline cache live in the registry's database, commands find sessions in the
    ///     directory, refused commands are counted by the authenticator.
    ///   - group: the gateway's event loops.
    ///   - outbox: where must-deliver events (bills first of all) are committed before the pile
    ///     is acknowledged and from where they are delivered; it runs as one of `services`.
    ///   - lanes: decides a session's lane at login (the lane rule book); "" = base.
    ///   - laneVersion: the version of the rules `lanes` follows (sessions re-decide on a change).
    public init(
        config: HubConfiguration = HubConfiguration(), gateway: GatewayConfiguration, stores: GatewayStores, group: any EventLoopGroup,
        outbox: Outbox, logger: Logger, lanes: @escaping @Sendable (Login, String) -> String = { _, _ in "" },
        laneVersion: @escaping @Sendable () -> Int = { 0 }
    ) {
        self.config = config
        self.outbox = outbox
        self.ejectionPolicy = BackendInstanceHealth.Policy(config)
        self.logger = logger
        self.laneSource = NIOLockedValueBox(LaneSource(decide: lanes, version: laneVersion))
        self.auth = stores.auth
        self.group = group
        let bootTag = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        self.bootTag = bootTag
        self.envelope = BackendEventEnvelope(nodeId: gateway.nodeId, bootTag: bootTag, pileUTCOffsetSeconds: gateway.pileUTCOffsetSeconds)
        self.router = BackendRouter(warmup: config.warmupWindow)
        let billingModels = try? BillingModelCache(database: stores.registry.database)
        self.billingModels = billingModels
        self.commands = BackendCommands(
            directory: stores.directory, defaultTimeout: config.commandTimeout, pileUTCOffsetSeconds: gateway.pileUTCOffsetSeconds,
            billingModels: billingModels)
        do {
            self.offlineAuthorizer = try OfflineAuthorizer(database: stores.registry.database, config: gateway)
        } catch {
            self.offlineAuthorizer = nil
            logger.error("offline authorization unavailable: its cache cannot open", metadata: ["error": "\(SQLiteStore.describe(error))"])
        }
        queuedCommandsBox.withLockedValue { $0 = openQueuedCommands(database: stores.registry.database) }
    }

    /// Replaces how lanes are decided (the assembly passes the lane rule book at creation; tests
    /// swap deciders on a running hub, hence the box).
    public func decideLanes(
        with decider: @escaping @Sendable (Login, String) -> String, version: @escaping @Sendable () -> Int = { 0 }
    ) {
        laneSource.withLockedValue { $0 = LaneSource(decide: decider, version: version) }
    }

    public var laneRulesVersion: Int { laneSource.withLockedValue { $0.version }() }

    /// The outbox's latest summary as JSON, for `/v1/stats`.
    public func outboxJSON() -> JSONValue {
        guard let summary = outbox.latestSummary.withLockedValue({ $0 }), let data = try? AdminAPI.encoder.encode(summary),
            let v = try? JSONValue.parse(data)
        else { return .null }
        return v
    }

    /// The hub's stats as JSON, for `/v1/stats`.
    public func statsJSON() -> JSONValue {
        guard let data = try? AdminAPI.encoder.encode(statsDocument()), let v = try? JSONValue.parse(data) else { return .null }
        return v
    }

    /// Adds the hub's metrics and the outbox's to the gateway's `/metrics`, makes the gateway not
    /// ready while the outbox cannot commit, and has reloads reach the offline policy. These are
    /// registrations on the gateway, built after the hub; the hub keeps no reference to it.
    public func register(on gateway: Gateway) {
        if let authorizer = offlineAuthorizer {
            gateway.metrics.addCollector { authorizer.collectMetrics($0) }
            gateway.onReload { authorizer.update($0) }
        }
        gateway.metrics.addCollector { [weak self] w in self?.collectMetrics(w) }
        let outbox = self.outbox
        gateway.metrics.addCollector { [weak outbox] w in outbox?.collectMetrics(w) }
        // A bill that cannot be stored cannot be acknowledged: not ready while commits fail.
        gateway.addReadinessCheck { [weak outbox] in outbox?.problem }
    }

    /// The hub's long-running work, for the gateway's service group: the outbox (its writer and
    /// delivery, handing stored events to this hub's routing) and the sweeper that times out
    /// acks and replies every 100 ms. Handed to the gateway at creation, they run in its service
    /// group between its own loops and the pile listeners, so they stop after the piles have
    /// drained (`Gateway.services`).
    public var services: [any Service] {
        [
            OutboxService(outbox: outbox) { [weak self] event, service in
                guard let self else { return false }
                let pending = BackendInstance.Pending(
                    id: event.id, text: event.payload, event: event.event, pile: event.pile.raw, route: RouteKey(lane: event.lane, service: ""))
                // The outbox keeps what finds no instance, so that is not a loss.
                return self.route(pending, onlyService: service, countUndeliverable: false) > 0
            },
            BackgroundLoop(name: "hub sweeper") { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(nanoseconds: 100_000_000)
                    self?.sweep()
                }
            },
            // Nothing to do until shutdown, when the offline cache's last writes are awaited
            // (before the registry's database closes: its loop stops after these).
            BackgroundLoop(
                name: "offline authorization store",
                loop: {
                    while !Task.isCancelled { try? await Task.sleep(nanoseconds: 3_600_000_000_000) }
                },
                finish: { [weak self] in await self?.offlineAuthorizer?.flush() }),
            queuedCommandLoop,
        ]
    }

    /// Must-deliver events go through it: committed, then delivered at least once per service.
    public let outbox: Outbox
    /// Instances that subscribed durably (the default): their service is known to the outbox.
    let durableInstances = NIOLockedValueBox<Set<UInt64>>([])

    var nodeId: String { envelope.nodeId }

    /// The hub's routes (`BackendHubRoutes`: the backends' WebSocket, commands, `/v1/hub`) and
    /// the outbox's (`OutboxRoutes`), for the API to add at start.
    public var routes: [AdminAPI.Routes] {
        [{ BackendHubRoutes.collection(hub: self) }, { OutboxRoutes.collection(outbox: self.outbox) }]
    }

    // MARK: GatewayEventSink

    public func lane(for login: Login, remoteHost: String) -> String {
        laneDecider(login, remoteHost)
    }

    public func wants(code: UInt8) -> Bool {
        guard let info = YKCMessageInfo.of(code: code) else { return wanted.withLockedValue { $0.contains("raw_frame") } }
        if outbox.isDurable(info.name) { return true }
        // A known code whose body does not decode is published as raw_frame.
        return wanted.withLockedValue { $0.contains(info.name) || $0.contains("raw_frame") }
    }

    public func sessionOnline(_ session: PileSessionInfo) {
        // Queued commands go out after the login (and its time sync) is written: on a task.
        queuedCommands?.pileOnline(session.pileId)
        guard wanted.withLockedValue({ $0.contains("pile_online") }) else { return }
        publish(event: "pile_online", code: 0x01, session: session, gun: nil, receivedAt: session.loggedInAt) { w in
            w.beginObject()
            w.field("remoteAddress", session.remoteAddress)
            w.field("connectionId", session.connectionId)
            w.field("lane", session.lane)
            w.key("login")
            session.login.writeJSON(into: &w)
            w.endObject()
        }
    }

    public func sessionOffline(_ session: PileSessionInfo, reason: OfflineReason) {
        let id = nextEventId()
        let watch = deliveryWatches.publishing(id, pile: session.pileId.raw, connection: session.connectionId)
        guard wanted.withLockedValue({ $0.contains("pile_offline") }) else {
            watch?.expect(0)
            return
        }
        let instances = publish(event: "pile_offline", code: nil, session: session, gun: nil, receivedAt: Date(), id: id) { w in
            w.beginObject()
            w.field("reason", reason.rawValue)
            w.field("remoteAddress", session.remoteAddress)
            w.field("connectionId", session.connectionId)
            w.endObject()
        }
        watch?.expect(instances)
    }

    public func frameReceived(_ message: YKCMessage, frame: YKCFrame, session: PileSessionInfo, receivedAt: Date) {
        if outbox.isDurable(message.name) {
            let (id, text) = envelope(
                event: message.name, code: frame.code, session: session, gun: message.gun, receivedAt: receivedAt
            ) { message.writeJSON(into: &$0) }
            outbox.append(
                OutboxEvent(
                    id: id, event: message.name, code: frame.code, pile: session.pileId, gun: message.gun, lane: session.lane,
                    tradeSerial: message.tradeSerial, receivedAt: receivedAt, payload: text),
                promise: nil)
            publishToTransient(id: id, text: text, event: message.name, session: session)
            return
        }
        publish(event: message.name, code: frame.code, session: session, gun: message.gun, receivedAt: receivedAt) {
            message.writeJSON(into: &$0)
        }
    }

    public func request(
        _ message: YKCMessage, frame: YKCFrame, session: PileSessionInfo, receivedAt: Date,
        respond: EventLoopPromise<YKCMessage?>
    ) {
        guard let replyInfo = YKCMessageInfo.of(code: frame.code).flatMap({ $0.repliedBy }).flatMap({ YKCMessageInfo.of(code: $0) })
        else { return respond.succeed(nil) }
        if frame.code == 0x3B, let serial = message.tradeSerial {
            // The bill is acknowledged to the pile only after it is committed (docs/ykc/PROTOCOL-FACTS.md §5.5).
            let name = message.name == "raw_frame" ? "transaction_record" : message.name
            // A session the gateway approved itself is marked, so it is settled once, knowingly.
            let offline = offlineAuthorizer?.ledger.entry(for: serial)
            let (id, text) = envelope(
                event: name, code: frame.code, session: session, gun: message.gun, receivedAt: receivedAt,
                extra: offline.map { entry in { Self.writeOfflineAuthorization(entry, into: &$0) } }
            ) { message.writeJSON(into: &$0) }
            let stored = respond.futureResult.eventLoop.makePromise(of: Outbox.AppendResult.self)
            outbox.append(
                OutboxEvent(
                    id: id, event: name, code: frame.code, pile: session.pileId, gun: message.gun, lane: session.lane,
                    tradeSerial: serial, receivedAt: receivedAt, payload: text),
                promise: stored)
            stored.futureResult.whenComplete { [self] result in
                switch result {
                case .success(let r):
                    respond.succeed(.transactionRecordAck(TransactionRecordAck(tradeSerial: serial, result: .accepted)))
                    if case .stored = r { publishToTransient(id: id, text: text, event: name, session: session) }
                case .failure: respond.succeed(nil)
                }
            }
            return
        }
        let fallback = localAnswer(to: message)
        guard wanted.withLockedValue({ $0.contains(message.name) }) else {
            return answerWithoutBackend(
                message, code: frame.code, session: session, receivedAt: receivedAt, outage: .noBackend, fallback: fallback, respond: respond)
        }
        let id = nextEventId()
        let promise = respond.futureResult.eventLoop.makePromise(of: YKCMessage?.self)
        let defaults = BackendPendingReplies<EventLoopPromise<YKCMessage?>>.defaults(for: message, pile: session.pileId)
        let refused = pendingReplies.withLockedValue {
            $0.expect(
                id: id, pile: session.pileId.raw, replyName: replyInfo.name, defaults: defaults,
                deadline: Date().addingTimeInterval(config.replyTimeout), waiter: promise,
                perPileLimit: config.pendingRepliesPerPile, totalLimit: config.pendingRepliesTotal)
        }
        if refused != nil {
            // Not stored: complete the waiter here (NIO must never see a promise dropped).
            promise.succeed(nil)
            return answerWithoutBackend(
                message, code: frame.code, session: session, receivedAt: receivedAt, outage: .overloaded, fallback: fallback, respond: respond)
        }
        let delivered = publish(
            event: message.name, code: frame.code, session: session, gun: message.gun,
            receivedAt: receivedAt, replyExpected: true, id: id
        ) { message.writeJSON(into: &$0) }
        if delivered == 0 {
            // Its waiter is completed unanswered: NIO must never see a promise dropped.
            pendingReplies.withLockedValue { $0.cancel(id: id) }?.waiter.succeed(nil)
            return answerWithoutBackend(
                message, code: frame.code, session: session, receivedAt: receivedAt, outage: .unreachable, fallback: fallback, respond: respond)
        }
        promise.futureResult.whenComplete { [self] result in
            guard let answer = (try? result.get()) ?? nil else {
                return answerWithoutBackend(
                    message, code: frame.code, session: session, receivedAt: receivedAt, outage: .timeout, fallback: fallback, respond: respond)
            }
            self.remember(answer)
            offlineAuthorizer?.backendAnswered(message, with: answer, pile: session.pileId)
            respond.succeed(answer)
        }
    }

    /// A durable event also goes, live and once, to services that subscribed without
    /// `durable` (`pilegate tail`, dashboards): they see it as it happens, and the outbox keeps
    /// nothing for them.
    func publishToTransient(id: String, text: ByteBuffer, event: String, session: PileSessionInfo) {
        guard wanted.withLockedValue({ $0.contains(event) }) else { return }
        route(
            BackendInstance.Pending(id: id, text: text, event: event, pile: session.pileId.raw, route: RouteKey(lane: session.lane, service: "")),
            skipService: { self.outbox.isDurableService($0) }, countUndeliverable: false)
    }

    public func decideLogin(_ login: Login, remoteAddress: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool?> {
        guard wanted.withLockedValue({ $0.contains("login") }) else { return eventLoop.makeSucceededFuture(nil) }
        let id = nextEventId()
        let promise = eventLoop.makePromise(of: YKCMessage?.self)
        let refused = pendingReplies.withLockedValue {
            $0.expect(
                id: id, pile: login.pileId.raw, replyName: "login_reply", defaults: ["pileId": .string(login.pileId.description)],
                deadline: Date().addingTimeInterval(config.replyTimeout), waiter: promise,
                perPileLimit: config.pendingRepliesPerPile, totalLimit: config.pendingRepliesTotal)
        }
        if refused != nil {
            // As a login no backend answered: the gateway's login policy decides.
            promise.succeed(nil)
            return eventLoop.makeSucceededFuture(nil)
        }
        let pseudo = PileSessionInfo(
            connectionId: 0, pileId: login.pileId, remoteAddress: remoteAddress,
            remoteHost: String(remoteAddress.split(separator: ":").first ?? ""), login: login,
            lane: laneDecider(login, String(remoteAddress.split(separator: ":").first ?? "")), connectedAt: Date(),
            loggedInAt: Date())
        let delivered = publish(
            event: "login", code: 0x01, session: pseudo, gun: nil, receivedAt: Date(), replyExpected: true, id: id
        ) { login.writeJSON(into: &$0) }
        if delivered == 0 {
            pendingReplies.withLockedValue { $0.cancel(id: id) }?.waiter.succeed(nil)
            return eventLoop.makeSucceededFuture(nil)
        }
        return promise.futureResult.map { reply in
            if case .loginReply(let r)? = reply { return r.result == .accepted }
            return nil
        }
    }

    /// What the gateway answers itself when no backend does (DESIGN: keep the lights on): the
    /// last billing model seen for the pile, from SQLite.
    func localAnswer(to message: YKCMessage) -> YKCMessage? {
        guard let cache = billingModels else { return nil }
        switch message {
        case .billingModelVerify(let v):
            guard let model = cache.model(for: v.pileId) else { return nil }
            return .billingModelVerifyReply(
                BillingModelVerifyReply(
                    pileId: v.pileId, billingModel: v.billingModel,
                    result: model.billingModel == v.billingModel ? .same : .different))
        case .billingModelRequest(let r):
            guard var model = cache.model(for: r.pileId) else { return nil }
            model.pileId = r.pileId
            return .billingModelReply(model)
        default:
            return nil
        }
    }

    /// Caches billing models the gateway sees going to piles.
    func remember(_ message: YKCMessage) {
        billingModels?.remember(message)
    }

    // MARK: routing

    func nextEventId() -> String {
        envelope.eventId(eventCounter.wrappingIncrementThenLoad(ordering: .relaxed))
    }

    /// Builds the event envelope and routes it to one instance per subscribed service.
    /// Returns how many instances it went to.
    @discardableResult
    func publish(
        event: String, code: UInt8?, session: PileSessionInfo, gun: Int?, receivedAt: Date,
        replyExpected: Bool = false, id: String? = nil, data: (inout JSONWriter) -> Void
    ) -> Int {
        let (id, text) = envelope(
            event: event, code: code, session: session, gun: gun, receivedAt: receivedAt,
            replyExpected: replyExpected, id: id, data: data)
        return route(
            BackendInstance.Pending(
                id: id, text: text, event: event, pile: session.pileId.raw, route: RouteKey(lane: session.lane, service: "")))
    }

    /// An event's id (a new one unless given) and its envelope text (`BackendEventEnvelope`).
    func envelope(
        event: String, code: UInt8?, session: PileSessionInfo, gun: Int?, receivedAt: Date,
        replyExpected: Bool = false, id: String? = nil, extra: ((inout JSONWriter) -> Void)? = nil, data: (inout JSONWriter) -> Void
    ) -> (String, ByteBuffer) {
        let envelope = self.envelope
        let id = id ?? envelope.eventId(eventCounter.wrappingIncrementThenLoad(ordering: .relaxed))
        let text = envelope.encode(
            id: id, event: event, code: code, pile: session.pileId, lane: session.lane, gun: gun, receivedAt: receivedAt,
            replyExpected: replyExpected, extra: extra, data: data)
        return (id, text)
    }

    /// Routes to every subscribed service; `exclude` skips one instance (re-routing after failure).
    @discardableResult
    func route(
        _ p: BackendInstance.Pending, onlyService: String? = nil, skipService: ((String) -> Bool)? = nil, exclude: UInt64? = nil,
        countUndeliverable: Bool = true
    ) -> Int {
        let now = Date()
        let tick = NIODeadline.now()
        let lane = p.route.lane
        var chosen: [BackendRouter.Choice<BackendInstance>] = []
        instances.withLockedValue { all in
            for (service, list) in all where (onlyService == nil || onlyService == service) && skipService?(service) != true {
                let choice = router.choose(pile: p.pile, lane: lane, among: list, now: now) { c in
                    guard c.id != exclude, c.wants(p.event), c.isHealthy(at: tick) else { return nil }
                    return c.routeCandidate
                }
                if let choice { chosen.append(choice) }
            }
        }
        if chosen.isEmpty && countUndeliverable { undeliverable.wrappingIncrement(ordering: .relaxed) }
        for choice in chosen {
            let instance = choice.instance
            var item = p
            item.route = RouteKey(lane: lane, service: instance.service)
            let result = instance.enqueue(item, queueLimit: instance.node == nil ? config.queueLimit : config.remoteQueueLimit)
            if result == .overflow { deliveryWatches.settled(item.id) }
            traffic.withLockedValue { t in
                t[item.route, default: BackendLaneTraffic()].count(fallback: choice.fallback, overflow: result == .overflow)
            }
        }
        return chosen.count
    }

    // MARK: instances

    /// - Parameter durable: the outbox keeps the service's durable events while it is away
    ///   (false: `pilegate tail` and other one-time subscribers, which must not pin events).
    /// - Parameters:
    ///   - node: for an instance of another node of the cluster (`ClusterEventRelay`), that node.
    ///   - joinedAt: when it subscribed there.
    func register(
        service: String, name: String, lane: String, events: Set<String>?, maxInFlight: Int, durable: Bool = true, node: String? = nil,
        joinedAt: Date = Date()
    ) -> BackendInstance {
        let instance = BackendInstance(
            id: instanceCounter.wrappingIncrementThenLoad(ordering: .relaxed), service: service, name: name, lane: lane,
            events: events, maxInFlight: maxInFlight, node: node, joinedAt: joinedAt)
        instances.withLockedValue { $0[service, default: []].append(instance) }
        if durable { durableInstances.withLockedValue { _ = $0.insert(instance.id) } }
        refreshWanted()
        if durable { outbox.serviceSubscribed(service, events: events) }
        logger.info(
            "backend subscribed",
            metadata: [
                "service": "\(service)", "instance": "\(name)", "lane": "\(lane)", "events": "\(events.map { Array($0).sorted() } ?? ["*"])",
                "node": "\(node ?? nodeId)",
            ])
        if node == nil { notifyLocalInstancesChanged() }
        return instance
    }

    func unregister(_ instance: BackendInstance) {
        instance.close()
        if durableInstances.withLockedValue({ $0.remove(instance.id) }) != nil { outbox.instanceLeft(instance.service) }
        instances.withLockedValue { all in
            all[instance.service]?.removeAll { $0.id == instance.id }
            if all[instance.service]?.isEmpty == true { all[instance.service] = nil }
        }
        refreshWanted()
        let leftovers = instance.takeUnacked()
        reroute(leftovers, from: instance, because: .instanceGone)
        logger.info(
            "backend unsubscribed",
            metadata: [
                "service": "\(instance.service)", "instance": "\(instance.name)", "rerouted": "\(leftovers.count)",
                "node": "\(instance.node ?? nodeId)",
            ])
        if instance.node == nil { notifyLocalInstancesChanged() }
    }

    func notifyLocalInstancesChanged() {
        localInstancesChanged.withLockedValue { $0 }?.call()
    }

    /// Work an instance will not do (it left, was ejected, timed out) goes to another instance of
    /// its service; an event handed over from outside goes back to its receipt instead, whose
    /// owner re-routes it.
    func reroute(_ items: [BackendInstance.Pending], from instance: BackendInstance, because failure: BackendEventReceipt.Failure) {
        for p in items {
            if let receipt = p.receipt {
                receipt.report(p.id, instance, .failed(failure))
            } else if route(p, onlyService: instance.service, exclude: instance.id) == 0 {
                deliveryWatches.settled(p.id)
            }
        }
    }

    private func refreshWanted() {
        let set = instances.withLockedValue { all -> WantedSet in
            var w = WantedSet()
            for list in all.values {
                for i in list {
                    if let e = i.events { w.names.formUnion(e) } else { w.all = true }
                }
            }
            return w
        }
        wanted.withLockedValue { $0 = set }
    }

    func acked(_ id: String, by instance: BackendInstance) -> Bool {
        guard let f = instance.ack(id) else { return false }
        let seconds = Double((NIODeadline.now() - f.sentAt).nanoseconds) / 1e9
        instance.observe(latency: seconds)
        if let receipt = f.item.receipt {
            // Handed over from outside: health here, the rest is the receipt owner's.
            if let period = instance.record(success: true, sentAt: f.sentAt, policy: ejectionPolicy) {
                ejected(instance, period: period, route: f.item.route)
            }
            receipt.report(id, instance, .acked)
            return true
        }
        outbox.acked(id: id, service: instance.service)
        deliveryWatches.settled(id)
        // Slow is an outlier: over the bound while another instance that could take this one's
        // piles answers within it. When every instance is slow (the backends all overloaded, or
        // the gateway itself behind on its loops, which delays every ack alike), ejecting one
        // only moves its load onto the others and the service collapses; so that is not a failure.
        let slow = seconds > config.latencyBound && hasFasterPeer(than: instance)
        traffic.withLockedValue { t in t[f.item.route, default: BackendLaneTraffic()].acked(latency: seconds, failure: slow) }
        if let period = instance.record(success: !slow, sentAt: f.sentAt, policy: ejectionPolicy) {
            ejected(instance, period: period, route: f.item.route)
        }
        return true
    }

    /// Whether another healthy instance that could take `instance`'s piles (same service, same
    /// lane or base, the fallback) acks within the latency bound. (An instance that does not
    /// ack at all is a failure at the ack timeout regardless: silent is not slow.)
    func hasFasterPeer(than instance: BackendInstance) -> Bool {
        let now = NIODeadline.now()
        return instances.withLockedValue { all in
            (all[instance.service] ?? []).contains {
                $0.id != instance.id && ($0.lane == instance.lane || $0.lane.isEmpty) && $0.isHealthy(at: now)
                    && ($0.latencyEWMA ?? .infinity) <= config.latencyBound
            }
        }
    }

    /// Counts one ejection (in the lane traffic that `/metrics` and `/v1/hub` both show, once per
    /// episode as the instance's own count) and moves its waiting work elsewhere.
    private func ejected(_ instance: BackendInstance, period: TimeAmount, route key: RouteKey) {
        traffic.withLockedValue { t in t[key, default: BackendLaneTraffic()].ejections += 1 }
        logger.warning(
            "backend instance ejected",
            metadata: [
                "service": "\(instance.service)", "instance": "\(instance.name)", "lane": "\(instance.lane)",
                "seconds": "\(Double(period.nanoseconds) / 1e9)",
            ])
        // Its waiting work goes elsewhere now rather than waiting out the ejection.
        reroute(instance.takeWaiting(), from: instance, because: .ejected)
        if instance.node == nil { notifyLocalInstancesChanged() }
    }

    /// Reply from a backend to a `replyExpected` event.
    func replied(_ id: String, data: JSONValue) throws(YKCJSONError) -> Bool {
        let result = pendingReplies.withLockedValue { p in
            Result { () throws(YKCJSONError) in try p.reply(id: id, data: data) }
        }
        guard let answer = try result.get() else { return false }
        answer.waiter.succeed(answer.message)
        return true
    }

    /// Times out acks and replies.
    func sweep() {
        let now = Date()
        for r in pendingReplies.withLockedValue({ $0.expire(now: now) }) { r.waiter.succeed(nil) }
        let timeout = TimeAmount.fromSeconds(config.ackTimeout)
        let all = instances.withLockedValue { $0.values.flatMap { $0 } }
        for instance in all {
            // Oldest first: the failure that ejects is the first of its episode.
            let expired = instance.expired(timeout: timeout, now: .now())
            for f in expired {
                guard instance.ack(f.item.id) != nil else { continue }
                if f.item.receipt == nil {
                    traffic.withLockedValue { $0[f.item.route, default: BackendLaneTraffic()].failures += 1 }
                }
                if let period = instance.record(success: false, sentAt: f.sentAt, policy: ejectionPolicy) {
                    ejected(instance, period: period, route: f.item.route)
                }
                // Unacked within the timeout: try another instance of the same service.
                reroute([f.item], from: instance, because: .ackTimeout)
            }
        }
    }

    // MARK: commands

    /// A command for a pile held by another node of the cluster (`ClusterCommandRouter`); nil
    /// when the pile is not held elsewhere.
    typealias CommandForwarder = @Sendable (String, String, JSONValue?, String, JSONValue?) async -> BackendCommands.Outcome?
    /// Set by `ClusterCommandRouter` when it is built: the router is built with this hub (it runs
    /// forwarded commands through it), so it can only install itself here afterwards.
    private let forwarder = NIOLockedValueBox<Callback<CommandForwarder>?>(nil)

    /// Cluster mode: commands for piles held by other nodes go through `forward`.
    func forwardCommands(_ forward: @escaping CommandForwarder) {
        forwarder.withLockedValue { $0 = Callback(forward) }
    }

    /// Runs a command for a backend of lane `senderLane` (see `BackendCommands.run`), on the node
    /// holding the pile in cluster mode; with `deliverWithin`, one for a pile online nowhere
    /// waits for it here (`QueuedCommands`).
    func runCommand(
        pile: String, command: String, args: JSONValue?, senderLane: String, timeout: JSONValue?, deliverWithin: JSONValue? = nil
    ) async -> BackendCommands.Outcome {
        if let forward = forwarder.withLockedValue({ $0 })?.call, let outcome = await forward(pile, command, args, senderLane, timeout) {
            return outcome
        }
        return await runLocalCommand(pile: pile, command: command, args: args, senderLane: senderLane, timeout: timeout, deliverWithin: deliverWithin)
    }

    /// Runs a command on a pile of this node (a forwarded command ends here: never forwarded again).
    func runLocalCommand(
        pile: String, command: String, args: JSONValue?, senderLane: String, timeout: JSONValue?, deliverWithin: JSONValue? = nil
    ) async -> BackendCommands.Outcome {
        await commands.run(
            pile: pile, command: command, args: args, senderLane: senderLane, timeout: timeout, deliverWithin: deliverWithin,
            queue: queuedCommands)
    }

    // MARK: visibility

    public struct HubStats: Codable, Sendable {
        public var instances: [InstanceStatus]
        public var lanes: [String: [String: BackendLaneTraffic]]
        public var undeliverable: Int
        public var pendingReplies: Int
    }

    public func statsDocument() -> HubStats {
        let now = Date()
        let list = instances.withLockedValue { $0.values.flatMap { $0 } }
        var lanes: [String: [String: BackendLaneTraffic]] = [:]
        for (k, v) in traffic.withLockedValue({ $0 }) { lanes[k.lane, default: [:]][k.service] = v }
        return HubStats(
            instances: list.map { $0.status(now: now, warmup: config.warmupWindow) }.sorted { ($0.service, $0.instance) < ($1.service, $1.instance) },
            lanes: lanes, undeliverable: undeliverable.load(ordering: .relaxed),
            pendingReplies: pendingReplies.withLockedValue { $0.count })
    }

    /// Writes the hub's series (`BackendHubMetrics`) from one reading of its state.
    func collectMetrics(_ w: MetricsWriter) {
        let now = Date()
        let instances = instances.withLockedValue { $0.values.flatMap { $0 } }.map { i in
            BackendHubMetrics.Instance(
                route: RouteKey(lane: i.lane, service: i.service), inFlight: i.inFlightCount,
                state: i.status(now: now, warmup: config.warmupWindow).state)
        }
        BackendHubMetrics(
            traffic: traffic.withLockedValue { $0 }, instances: instances, undeliverable: undeliverable.load(ordering: .relaxed),
            commandsRefusedPerSocket: commandsRefusedPerSocket.load(ordering: .relaxed),
            pendingReplies: pendingReplies.withLockedValue { ($0.count, $0.refused) }
        ).write(to: w)
    }
}
