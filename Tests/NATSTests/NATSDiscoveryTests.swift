import Foundation
import NATSTestSupport
import NIOCore
import Testing

@testable import NATS

extension RealServerTests {
    @Suite("Cluster server discovery (INFO connect_urls) against real nats-servers", .timeLimit(.minutes(1)))
    struct NATSDiscoveryTests {
        @Test("a client given one server of a cluster learns the other and fails over to it")
        func failoverToDiscoveredServer() async throws {
            let routeA = try await NATSTestServer.freePort()
            let routeB = try await NATSTestServer.freePort()
            func config(name: String, listen: Int, route: Int) -> String {
                """
                server_name: \(name)
                cluster {
                  name: "pilegate-test"
                  listen: "127.0.0.1:\(listen)"
                  routes: ["nats-route://127.0.0.1:\(route)"]
                }
                """
            }
            try await NATSTestServer.with(configuration: config(name: "a", listen: routeA, route: routeB), jetStream: false) { a in
                try await NATSTestServer.with(configuration: config(name: "b", listen: routeB, route: routeA), jetStream: false) { b in
                    let client = try await a.connect()  // knows only a
                    #expect(client.options.servers == [a.address])
                    try await waitUntil("b announced in connect_urls") { client.knownServers.contains(b.address) }
                    #expect(client.knownServers.first == a.address)

                    let publisher = try await b.connect()
                    let collector = MessageCollector(try await client.subscribe(to: "cluster.>"))
                    // The subscription propagates over the route before b's publishes reach it.
                    try await waitUntil("route carries the subscription") {
                        try publisher.publish("probe", to: "cluster.probe")
                        try await Task.sleep(for: .milliseconds(50))
                        return !collector.messages.isEmpty
                    }

                    await a.stop()
                    // Connected to b (it may take more than one attempt on a loaded machine: a's port
                    // is tried too, and refused).
                    try await waitUntil("reconnected to b") { client.status == .connected && client.serverInfo?.serverName == "b" }
                    #expect(client.statistics.reconnects >= 1)
                    #expect(client.knownServers.contains(b.address))
                    // `.connected` means the subscriptions were re-sent, not yet processed by b: a
                    // round trip makes sure b has them before the publisher, on another connection,
                    // publishes.
                    try await client.flush()
                    let before = collector.messages.count
                    try publisher.publish("after failover", to: "cluster.x")
                    try await waitUntil { collector.strings.dropFirst(before).contains("after failover") }
                    await client.close()
                    await publisher.close()
                }
            }
        }
    }
}
