import Foundation
import Logging
import NATS
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A real `nats-server` for one test: JetStream on, bound to 127.0.0.1 on a free port, storing in a
/// temporary directory, with the monitoring port for `/varz`-style checks. `restart()` keeps the port
/// and the store, so clients can reconnect to it and JetStream state survives.
public final class NATSTestServer: @unchecked Sendable {
    public private(set) var port: Int
    public private(set) var monitorPort: Int
    public let directory: URL
    public let configuration: String?
    public let jetStream: Bool
    private var process: Process?

    public var url: String { "nats://127.0.0.1:\(port)" }
    public var address: NATSServerAddress { NATSServerAddress(host: "127.0.0.1", port: port) }
    public var pid: Int32? { process?.processIdentifier }

    /// Starts a server; `configuration` is written to a config file (for auth, TLS, limits, clustering).
    /// `jetStream: false` for servers that need none (operator mode without a system account, routes).
    public init(configuration: String? = nil, jetStream: Bool = true) async throws {
        self.directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("nats-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.port = try await Self.freePort()
        self.monitorPort = try await Self.freePort()
        self.configuration = configuration
        self.jetStream = jetStream
        // A free port is only free until someone binds it: another test process (other suites and
        // worktrees start servers at the same time) can take it before this server does. Then this
        // server exits and the port answers for the other one; `start` notices, and the first start
        // tries fresh ports.
        var attempt = 1
        while true {
            do {
                try await start()
                return
            } catch TestServerError.portTaken where attempt < 5 {
                attempt += 1
                port = try await Self.freePort()
                monitorPort = try await Self.freePort()
            } catch {
                removeFiles()
                throw error
            }
        }
    }

    /// Runs `body` with a fresh server and always stops it (and removes its store) afterwards.
    @discardableResult
    public static func with<T>(
        configuration: String? = nil, jetStream: Bool = true, _ body: (NATSTestServer) async throws -> T
    ) async throws -> T {
        let server = try await NATSTestServer(configuration: configuration, jetStream: jetStream)
        do {
            let result = try await body(server)
            await server.stop()
            server.removeFiles()
            return result
        } catch {
            await server.stop()
            server.removeFiles()
            throw error
        }
    }

    /// Options for a client of this server with test-friendly timings.
    public func clientOptions() -> NATSClientOptions {
        var options = NATSClientOptions(servers: [address])
        options.reconnect = NATSReconnectPolicy(initialDelay: .milliseconds(50), maxDelay: .milliseconds(250))
        options.requestTimeout = .seconds(5)
        options.connectTimeout = .seconds(5)
        return options
    }

    public func connect(_ adjust: (inout NATSClientOptions) -> Void = { _ in }) async throws -> NATSClient {
        var options = clientOptions()
        adjust(&options)
        var logger = Logger(label: "nats-test")
        logger.logLevel = .warning
        return try await NATSClient.connect(options, logger: logger)
    }

    /// Starts the server on its ports and returns once it is ready: its own log says so (not just
    /// "something accepts on the port", which another test's server on a reused port also does).
    /// Throws `portTaken` when it could not bind its ports.
    public func start() async throws {
        let readyBefore = readyCount()
        var arguments = [
            "-a", "127.0.0.1", "-p", "\(port)", "-m", "\(monitorPort)",
            "-sd", directory.appendingPathComponent("store").path,
            "-l", directory.appendingPathComponent("server.log").path,
        ]
        if jetStream { arguments.insert("-js", at: 0) }
        if let configuration {
            let file = directory.appendingPathComponent("server.conf")
            try configuration.write(to: file, atomically: true, encoding: .utf8)
            arguments += ["-c", file.path]
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        let stderrFile = directory.appendingPathComponent("stderr.log")
        _ = FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: stderrFile)
        try process.run()
        self.process = process
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if !process.isRunning {
                self.process = nil
                let log = log()
                if log.contains("address already in use") { throw TestServerError.portTaken(log: log) }
                throw TestServerError.exited(log: log)
            }
            if readyCount() > readyBefore {
                let clientPortReady = await Self.accepts(port: port)
                let monitorPortReady = await Self.accepts(port: monitorPort)
                if clientPortReady && monitorPortReady && process.isRunning { return }
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        await stop()
        throw TestServerError.notReady(log: log())
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it to exit, polling without
    /// blocking a thread of the cooperative pool (other suites run on it meanwhile).
    public func stop() async {
        guard let process, process.isRunning else { return }
        process.terminate()
        let deadline = ContinuousClock.now + .seconds(5)
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            while process.isRunning { try? await Task.sleep(for: .milliseconds(10)) }
        }
        self.process = nil
    }

    public func restart() async throws {
        await stop()
        try await start()
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: a dead peer whose socket stays open.
    public func pause() { if let pid { kill(pid, SIGSTOP) } }
    public func resume() { if let pid { kill(pid, SIGCONT) } }

    public func removeFiles() {
        try? FileManager.default.removeItem(at: directory)
    }

    /// How many times the server's log says it is ready (the log is kept across restarts).
    private func readyCount() -> Int {
        let text = (try? String(contentsOf: directory.appendingPathComponent("server.log"), encoding: .utf8)) ?? ""
        return text.components(separatedBy: "Server is ready").count - 1
    }

    public func log() -> String {
        ["stderr.log", "server.log"].map {
            (try? String(contentsOf: directory.appendingPathComponent($0), encoding: .utf8)) ?? ""
        }.joined(separator: "\n")
    }

    /// A monitoring endpoint (`varz`, `connz`, `jsz?…`) as JSON.
    public func monitor(_ path: String) async throws -> [String: Any] {
        let body = try await HTTPGet.fetch(host: "127.0.0.1", port: monitorPort, path: "/" + path)
        guard let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
            throw TestServerError.badMonitorResponse(body)
        }
        return object
    }

    public static let executable: String = {
        for candidate in ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return "/usr/sbin/nats-server"
    }()

    /// An ephemeral port the kernel hands out (bound then released).
    public static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port
        try? await channel.close()
        guard let port else { throw TestServerError.noPort }
        return port
    }

    public static func accepts(port: Int) async -> Bool {
        guard let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port).get()
        else { return false }
        try? await channel.close()
        return true
    }

    public enum TestServerError: Error {
        case exited(log: String)
        /// Another process bound one of the server's ports first.
        case portTaken(log: String)
        case notReady(log: String)
        case noPort
        case badMonitorResponse(String)
    }
}

/// A minimal HTTP/1.0 GET over NIO for the server's monitoring port.
public enum HTTPGet {
    public static func fetch(host: String, port: Int, path: String) async throws -> String {
        let collected = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: String.self)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(promise: collected))
                }
            }
            .connect(host: host, port: port).get()
        try await channel.writeAndFlush(ByteBuffer(string: "GET \(path) HTTP/1.0\r\nHost: \(host)\r\n\r\n"))
        let response = try await collected.futureResult.get()
        guard let split = response.range(of: "\r\n\r\n") else { return response }
        return String(response[split.upperBound...])
    }

    final class Collector: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var buffer = ByteBuffer()
        let promise: EventLoopPromise<String>
        init(promise: EventLoopPromise<String>) { self.promise = promise }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var chunk = unwrapInboundIn(data)
            buffer.writeBuffer(&chunk)
        }
        func channelInactive(context: ChannelHandlerContext) {
            promise.succeed(String(buffer: buffer))
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
            context.close(promise: nil)
        }
    }
}

