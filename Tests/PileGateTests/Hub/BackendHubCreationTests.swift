import Foundation
import Logging
import NIOPosix
@testable import PileGate
import Testing

/// The hub is built complete, with the gateway's stores at creation (`GatewayStores`), before any
/// gateway exists: nothing in it waits to be attached later.
@Suite("Backend hub: built with its dependencies at creation")
struct BackendHubCreationTests {
    @Test("before any gateway: commands find the session directory, queued commands, billing models and the offline policy are open, envelopes carry the node")
    func completeBeforeTheGateway() async throws {
        let config = TestGateway.configuration { $0.nodeId = "hub-node" }
        defer { try? FileManager.default.removeItem(atPath: config.dataDirectory) }
        var logger = Logger(label: "hub-creation-test")
        logger.logLevel = .critical
        let outbox = try Outbox(directory: config.dataDirectory, settings: Outbox.Settings(), logger: logger)
        defer { outbox.close() }
        let stores = try GatewayStores.open(config: config, logger: logger)
        let hub = BackendHub(
            gateway: config, stores: stores, group: MultiThreadedEventLoopGroup.singleton, outbox: outbox, logger: logger)
        #expect(hub.queuedCommands != nil)
        #expect(hub.billingModels != nil)
        #expect(hub.offlineAuthorizer != nil)
        #expect(hub.nodeId == "hub-node")
        #expect(hub.nextEventId().hasPrefix("hub-node-"))
        // A command for a pile with no session: the directory answers, not "not attached".
        let outcome = await hub.runLocalCommand(
            pile: "55010600000600", command: "reboot", args: .object(["when": .number(1)]), senderLane: "", timeout: nil)
        if case .failure(let code, _) = outcome {
            #expect(code == "pile_offline")
        } else {
            Issue.record("expected pile_offline, got \(outcome)")
        }
        await stores.registry.close()
    }
}
