import Foundation
import Logging
import NIOCore
import NIOPosix
import PileGate
import PileSim
import ServiceLifecycle
import YKC

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A real gateway on ephemeral loopback ports with its own temporary data directory and fast
/// timers, for tests that drive it the way piles and operators do.
final class TestGateway: Sendable {
    let gateway: Gateway
    let dataDirectory: String
    let pilePort: Int
    let apiPort: Int

    /// The settings of a test gateway: ephemeral loopback ports, a temporary data directory,
    /// fast timers.
    static func configuration(_ configure: (inout GatewayConfiguration) -> Void = { _ in }) -> GatewayConfiguration {
        var config = GatewayConfiguration()
        config.nodeId = "test-node"
        config.pileHost = "127.0.0.1"
        config.pilePort = 0
        config.apiPort = 0
        config.dataDirectory = NSTemporaryDirectory() + "pilegate-test-" + UUID().uuidString
        // Generous by default so a loaded machine does not close test clients; tests of the
        // timeouts set their own.
        config.loginTimeout = 10
        config.livenessTimeout = 10
        config.drainWindow = 0.2
        config.registryFlushInterval = 0.02
        config.timeSyncOnLogin = false
        configure(&config)
        return config
    }

    static func start(
        sink: any GatewayEventSink = NoBackendSink(), routes: [AdminAPI.Routes] = [], services: [any Service] = [],
        _ configure: (inout GatewayConfiguration) -> Void = { _ in }
    ) async throws -> TestGateway {
        try await start(config: configuration(configure), sink: sink, routes: routes, services: services)
    }

    /// Starts a gateway with `config`; with `stores` when pieces built before it (a hub) share them.
    static func start(
        config: GatewayConfiguration, stores: GatewayStores? = nil, sink: any GatewayEventSink = NoBackendSink(),
        routes: [AdminAPI.Routes] = [], services: [any Service] = [],
        configurationSource: (@Sendable () throws(ConfigurationError) -> GatewayConfiguration)? = nil
    ) async throws -> TestGateway {
        let gateway: Gateway
        do {
            gateway = try Gateway(
                config: config, stores: stores, sink: sink, group: MultiThreadedEventLoopGroup.singleton, logger: logger,
                routes: routes, services: services, configurationSource: configurationSource)
        } catch {
            removeOwnDirectory(config.dataDirectory)
            throw error
        }
        do {
            try await gateway.start()
        } catch {
            await gateway.shutdown()
            removeOwnDirectory(config.dataDirectory)
            throw error
        }
        return TestGateway(gateway: gateway, dataDirectory: config.dataDirectory)
    }

    /// Removes `directory` if this harness named it (a test that names its own keeps it).
    static func removeOwnDirectory(_ directory: String) {
        if (directory as NSString).lastPathComponent.hasPrefix("pilegate-test-") {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    static var logger: Logger {
        var logger = Logger(label: "pilegate-test")
        logger.logLevel = .critical
        return logger
    }

    private init(gateway: Gateway, dataDirectory: String) {
        self.gateway = gateway
        self.dataDirectory = dataDirectory
        self.pilePort = gateway.pilePort ?? 0
        self.apiPort = gateway.apiPort ?? 0
    }

    var counters: GatewayCounters { gateway.counters }

    func stop() async {
        await gateway.shutdown()
        Self.removeOwnDirectory(dataDirectory)
    }

    /// A simulated pile with fast timers aimed at this gateway.
    func pile(_ id: String, guns: Int = 2, _ configure: (inout SimulatedPileConfig) -> Void = { _ in }) async throws -> SimulatedPile {
        var c = SimulatedPileConfig.fast(pileID: PileID(id) ?? PileID(raw: 0), gunCount: guns)
        c.reconnect = .never
        configure(&c)
        return try await SimulatedPile.connect(to: pilePort, c)
    }

    // MARK: HTTP

    struct HTTPResult: Sendable {
        var status: Int
        var body: String
        var headers: [String: String] = [:]
        var json: Any? { try? JSONSerialization.jsonObject(with: Data(body.utf8)) }
        var object: [String: Any] { json as? [String: Any] ?? [:] }
    }

    func http(_ method: String, _ path: String, body: String? = nil) async throws -> HTTPResult {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(apiPort)\(path)")!)
        request.httpMethod = method
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as? HTTPURLResponse
        var headers: [String: String] = [:]
        for (k, v) in http?.allHeaderFields ?? [:] {
            if let k = k as? String, let v = v as? String { headers[k.lowercased()] = v }
        }
        return HTTPResult(status: http?.statusCode ?? 0, body: String(decoding: data, as: UTF8.self), headers: headers)
    }

    /// Polls until `condition` holds or `timeout` passes; returns whether it held.
    @discardableResult
    func eventually(timeout: TimeInterval = 5, _ condition: @Sendable () async throws -> Bool) async rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await condition() { return true }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        return try await condition()
    }
}

/// A bare TCP client for hostile-client tests: raw bytes, no protocol behaviour.
final class RawClient: @unchecked Sendable {
    let channel: any Channel
    private let received: NIOLockedValueBoxWrapper

    static func connect(port: Int, autoRead: Bool = true, receiveBuffer: Int? = nil) async throws -> RawClient {
        let box = NIOLockedValueBoxWrapper()
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.autoRead, value: autoRead)
        if let receiveBuffer {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: receiveBuffer)
        }
        let channel = try await bootstrap
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(Collector(box: box)) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawClient(channel: channel, received: box)
    }

    private init(channel: any Channel, received: NIOLockedValueBoxWrapper) {
        self.channel = channel
        self.received = received
    }

    func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    func send(_ frame: YKCFrame) async throws { try await send(frame.bytes) }

    var receivedBytes: [UInt8] { received.bytes }
    var isClosed: Bool { received.closed }

    func close() async { try? await channel.close() }

    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let box: NIOLockedValueBoxWrapper
        init(box: NIOLockedValueBoxWrapper) { self.box = box }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let b = unwrapInboundIn(data)
            box.append(Array(b.readableBytesView))
        }
        func channelInactive(context: ChannelHandlerContext) { box.markClosed() }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }
}

/// Lock-protected received bytes.
final class NIOLockedValueBoxWrapper: @unchecked Sendable {
    private let lock = NSLock()
    private var _bytes: [UInt8] = []
    private var _closed = false
    func append(_ b: [UInt8]) { lock.lock(); _bytes += b; lock.unlock() }
    func markClosed() { lock.lock(); _closed = true; lock.unlock() }
    var bytes: [UInt8] { lock.lock(); defer { lock.unlock() }; return _bytes }
    var closed: Bool { lock.lock(); defer { lock.unlock() }; return _closed }
}

/// Frames used by tests, built with the codec.
enum Frames {
    static func login(_ id: String, guns: UInt8 = 2, sequence: UInt16 = 0) -> YKCFrame {
        Login(
            pileId: PileID(id) ?? PileID(raw: 0), pileType: .dc, gunCount: guns, protocolVersion: 16, firmwareVersion: "T1.0",
            networkType: .lan, sim: "00000000000000000000", carrier: .other
        ).frame(sequence: YKCSequence(counter: sequence))
    }

    static func heartbeat(_ id: String, gun: Int = 1, sequence: UInt16 = 1) -> YKCFrame {
        Heartbeat(pileId: PileID(id) ?? PileID(raw: 0), gun: GunNumber(number: gun) ?? 1, gunState: .normal)
            .frame(sequence: YKCSequence(counter: sequence))
    }

    /// Parses every frame in `bytes`.
    static func parse(_ bytes: [UInt8]) -> [YKCFrame] {
        var buffer = ByteBuffer(bytes: bytes)
        var parser = YKCFrameParser()
        var out: [YKCFrame] = []
        while let e = parser.next(&buffer) {
            if case .frame(let f) = e { out.append(f) }
        }
        return out
    }
}
