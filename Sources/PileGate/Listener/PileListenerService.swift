import Foundation
import ServiceLifecycle

/// The gateway's pile listeners (plain, and TLS with `pileTLSCertificate`) as the last service of
/// its group: started last, so piles are accepted only once the API listens, and shut down
/// first, with the drain.
///
/// On graceful shutdown it drains: `/readyz` turns 503 and the listeners stop accepting, live
/// sessions close in small batches spread over `drainWindow`, connections that never logged in
/// are closed by the event loops' liveness sweepers, and it waits up to `shutdownGrace` for the
/// connections to end. The services started before it (the hub, the outbox, the registry, the
/// API) are still running then, so backends get every drained pile's `pile_offline` and the
/// drained piles' bills are committed.
struct PileListenerService: Service {
    let gateway: Gateway

    func run() async throws {
        let context = gateway.context
        let config = context.config
        do {
            try await gateway.startup.waitForAPI()
        } catch {
            // The API could not listen (its service threw and the group is shutting down): no
            // pile port opens; this service ends when the shutdown reaches it.
            try? await gracefulShutdown()
            return
        }
        let listener: PileListener
        do {
            listener = try await PileListener.bind(gateway: context, group: gateway.group)
        } catch {
            throw GatewayStartError(
                message: "cannot listen for piles on \(config.pileHost):\(config.pilePort): \(AdminAPI.describe(bindError: error))")
        }
        var tlsListener: PileListener?
        if let pileTLS = gateway.pileTLS {
            do {
                tlsListener = try await PileListener.bind(gateway: context, group: gateway.group, tls: pileTLS)
            } catch {
                await listener.stopAccepting()
                throw GatewayStartError(
                    message: "cannot listen for TLS piles on \(config.pileHost):\(config.pileTLSPort): \(AdminAPI.describe(bindError: error))")
            }
        }
        let files = FileLimit.read(reserve: config.fileDescriptorReserve)
        context.admission.fileLimitCap.store(files.pileConnections, ordering: .relaxed)
        if files.pileConnections < config.maxConnections {
            context.logger.notice(
                "pile connections capped by the file limit",
                metadata: [
                    "file_limit": "\(files.limit)", "open": "\(files.open)", "reserve": "\(files.reserve)",
                    "pile_connections": "\(files.pileConnections)",
                ])
        }
        let ports = GatewayStartup.PilePorts(plain: listener.localAddress?.port, tls: tlsListener?.localAddress?.port)
        gateway.startup.gatewayStarted(ports)
        context.logger.notice(
            "pilegate started",
            metadata: [
                "node": "\(config.nodeId)",
                "piles": "\(config.pileHost):\(ports.plain ?? config.pilePort)",
                "piles_tls": "\(ports.tls.map { "\(config.pileHost):\($0)" } ?? "off")",
                "api": "\(config.apiHost):\(gateway.apiPort ?? config.apiPort)",
                "data": "\(config.dataDirectory)", "login_policy": "\(config.loginPolicy.rawValue)",
            ])
        // Returns when shutdown is requested (or throws on cancellation); either way, drain.
        try? await gracefulShutdown()
        await drain(listeners: [listener] + (tlsListener.map { [$0] } ?? []))
    }

    private func drain(listeners: [PileListener]) async {
        let context = gateway.context
        context.shuttingDown.store(true, ordering: .relaxed)
        for l in listeners { await l.stopAccepting() }
        let sessions = context.directory.all()
        let window = context.config.drainWindow
        context.logger.notice("draining pile connections", metadata: ["sessions": "\(sessions.count)", "window_s": "\(window)"])
        if !sessions.isEmpty {
            // Close in small batches spread evenly over the window.
            let batches = max(1, min(sessions.count, Int(window * 20)))
            let perBatch = (sessions.count + batches - 1) / batches
            let pause = window / Double(batches)
            var index = 0
            while index < sessions.count {
                for s in sessions[index..<min(index + perBatch, sessions.count)] { s.close(reason: .shutdown) }
                index += perBatch
                if index < sessions.count && pause > 0 { try? await Task.sleep(nanoseconds: UInt64(pause * 1e9)) }
            }
        }
        // Connections that never logged in are closed too: every connection is in its event
        // loop's liveness sweeper from activation on, and the sweepers close them all.
        context.liveness.closeAll(reason: .shutdown)
        let deadline = Date().addingTimeInterval(context.config.shutdownGrace)
        while context.counters.connections.load(ordering: .relaxed) > 0 && Date() < deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }
}
