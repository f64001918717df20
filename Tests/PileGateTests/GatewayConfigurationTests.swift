import Foundation
import PileGate
import Testing

@Suite("Configuration: defaults, file, environment, clear errors")
struct GatewayConfigurationTests {
    @Test("embedded defaults match the documented contract")
    func defaults() throws {
        let c = try GatewayConfiguration.load(file: nil, environment: [:])
        #expect(c.pileHost == "0.0.0.0")
        #expect(c.pilePort == 8767)
        #expect(c.apiHost == "127.0.0.1")
        #expect(c.apiPort == 8780)
        #expect(c.dataDirectory == "./pilegate-data")
        #expect(c.loginTimeout == 10)
        #expect(c.livenessTimeout == 35)
        #expect(c.loginPolicy == .open)
        #expect(c.flapMaxConnects == 15 && c.flapWindow == 60 && c.flapBanDuration == 300)
        #expect(c.listenBacklog >= 4096)
    }

    @Test("a config file overrides defaults and the environment overrides the file")
    func layering() throws {
        let path = NSTemporaryDirectory() + "pilegate-config-\(UUID().uuidString).json"
        try Data(#"{"pilePort": 9000, "loginPolicy": "registry", "livenessTimeout": 40.5}"#.utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = try GatewayConfiguration.load(file: path, environment: ["PILEGATE_PILE_PORT": "9100", "PATH": "/bin"])
        #expect(c.pilePort == 9100)
        #expect(c.loginPolicy == .registry)
        #expect(c.livenessTimeout == 40.5)
    }

    @Test("hub tuning comes from the same settings")
    func hubSettings() throws {
        let c = try GatewayConfiguration.load(file: nil, environment: ["PILEGATE_HUB_ACK_TIMEOUT": "2.5", "PILEGATE_HUB_WARMUP_WINDOW": "0"])
        #expect(c.hub.ackTimeout == 2.5)
        #expect(c.hub.warmupWindow == 0)
        #expect(c.hub.queueLimit == 10_000)
    }

    @Test("environment names are PILEGATE_ plus the key in upper snake case")
    func environmentNames() {
        #expect(GatewayConfiguration.environmentName(for: "pilePort") == "PILEGATE_PILE_PORT")
        #expect(GatewayConfiguration.environmentName(for: "maxConnectionsPerAddress") == "PILEGATE_MAX_CONNECTIONS_PER_ADDRESS")
        #expect(GatewayConfiguration.environmentName(for: "pileUTCOffsetSeconds") == "PILEGATE_PILE_UTCOFFSET_SECONDS")
    }

    @Test("an invalid value stops start-up with the key and the problem named")
    func invalidValues() {
        #expect(throws: ConfigurationError.self) { try GatewayConfiguration.load(file: nil, environment: ["PILEGATE_PILE_PORT": "abc"]) }
        do {
            _ = try GatewayConfiguration.load(file: nil, environment: ["PILEGATE_PILE_PORT": "70000"])
            Issue.record("expected an error")
        } catch {
            #expect(error.key == "pilePort")
            #expect(error.description.contains("pilePort"))
            #expect(error.description.contains("PILEGATE_PILE_PORT"))
            #expect(error.description.contains("70000"))
        }
        do {
            _ = try GatewayConfiguration.load(file: nil, environment: ["PILEGATE_LOGIN_POLICY": "maybe"])
            Issue.record("expected an error")
        } catch {
            #expect(error.key == "loginPolicy")
            #expect(error.problem.contains("open"))
        }
        do {
            _ = try GatewayConfiguration.load(file: nil, environment: ["PILEGATE_NO_SUCH_THING": "1"])
            Issue.record("expected an error")
        } catch {
            #expect(error.key == "PILEGATE_NO_SUCH_THING")
        }
    }

    @Test("a broken or unknown-key config file is refused, naming the file or key")
    func badFiles() throws {
        let path = NSTemporaryDirectory() + "pilegate-bad-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: ConfigurationError.self) { try GatewayConfiguration.load(file: path, environment: [:]) }
        try Data(#"{"pilePrt": 1}"#.utf8).write(to: URL(fileURLWithPath: path))
        do {
            _ = try GatewayConfiguration.load(file: path, environment: [:])
            Issue.record("expected an error")
        } catch {
            #expect(error.key == "pilePrt")
            #expect(error.source == path)
        }
        #expect(throws: ConfigurationError.self) { try GatewayConfiguration.load(file: "/nonexistent/x.json", environment: [:]) }
        try Data(#"{"maxConnections": 10, "maxConnectionsPerAddress": 20}"#.utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: ConfigurationError.self) { try GatewayConfiguration.load(file: path, environment: [:]) }
    }
}
