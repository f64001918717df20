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

    /// Writes `json` to a temporary config file and loads it with no environment.
    private func load(_ json: String) throws(ConfigurationError) -> GatewayConfiguration {
        let path = NSTemporaryDirectory() + "pilegate-config-\(UUID().uuidString).json"
        _ = FileManager.default.createFile(atPath: path, contents: Data(json.utf8))
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try GatewayConfiguration.load(file: path, environment: [:])
    }

    private func problem(_ json: String) -> ConfigurationError? {
        do {
            _ = try load(json)
            return nil
        } catch {
            return error
        }
    }

    @Test("every JSON number is a number: 1, 0, 1.0 and 1e2 are accepted wherever a number is")
    func jsonNumbers() throws {
        #expect(try load(#"{"frameRatePerSecond": 1}"#).frameRatePerSecond == 1)
        #expect(try load(#"{"frameRatePerSecond": 1.0}"#).frameRatePerSecond == 1)
        #expect(try load(#"{"flapBanDuration": 0}"#).flapBanDuration == 0)
        #expect(try load(#"{"drainWindow": 0.0}"#).drainWindow == 0)
        #expect(try load(#"{"pilePort": 0}"#).pilePort == 0)
        #expect(try load(#"{"pilePort": 1}"#).pilePort == 1)
        #expect(try load(#"{"maxThrottleEpisodes": 1.0}"#).maxThrottleEpisodes == 1)
        #expect(try load(#"{"listenBacklog": 1e2}"#).listenBacklog == 100)
        #expect(try load(#"{"pileUTCOffsetSeconds": -3600}"#).pileUTCOffsetSeconds == -3600)
        // Bools stay bools and numbers stay numbers, in both directions.
        #expect(try load(#"{"timeSyncOnLogin": false}"#).timeSyncOnLogin == false)
        #expect(problem(#"{"timeSyncOnLogin": 1}"#)?.problem == "expected true or false, got 1")
        #expect(problem(#"{"pilePort": true}"#)?.problem == "expected an integer, got true")
        #expect(problem(#"{"frameRatePerSecond": false}"#)?.problem == "expected a number, got false")
    }

    @Test("an out-of-range number is reported as written, never as what a conversion made of it")
    func outOfRangeAsWritten() {
        #expect(problem(#"{"pilePort": 1e300}"#)?.problem == "1e300 is outside 0...65535")
        #expect(problem(#"{"pilePort": -1e300}"#)?.problem == "-1e300 is outside 0...65535")
        #expect(problem(#"{"pilePort": 9300000000000000000}"#)?.problem == "9.3e18 is outside 0...65535")
        #expect(problem(#"{"pilePort": 70000}"#)?.problem == "70000 is outside 0...65535")
        #expect(problem(#"{"pilePort": 80.5}"#)?.problem == "expected an integer, got 80.5")
        #expect(problem(#"{"frameRatePerSecond": 1e300}"#)?.problem == "1e300 is outside 0.1...1000000")
        #expect(problem(#"{"flapBanDuration": -1}"#)?.problem == "-1 is outside 0...604800")
        let env = { (name: String, value: String) -> ConfigurationError? in
            do throws(ConfigurationError) {
                _ = try GatewayConfiguration.load(file: nil, environment: [name: value])
                return nil
            } catch { return error }
        }
        #expect(env("PILEGATE_PILE_PORT", "1e300")?.problem == "'1e300' is outside 0...65535")
        #expect(env("PILEGATE_PILE_PORT", "9223372036854775808")?.problem == "'9223372036854775808' is outside 0...65535")
        #expect(env("PILEGATE_FRAME_RATE_PER_SECOND", "nan")?.problem == "expected a number, got 'nan'")
        #expect(env("PILEGATE_DRAIN_WINDOW", "inf")?.problem == "expected a number, got 'inf'")
        #expect(env("PILEGATE_PILE_PORT", "8080") == nil)
        #expect(env("PILEGATE_FLAP_BAN_DURATION", "0") == nil)
    }

    @Test("a configuration file over 1 MiB (or a device such as /dev/zero) and a string setting over 4096 bytes are refused, not read whole")
    func boundedInput() throws {
        let path = NSTemporaryDirectory() + "pilegate-big-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let big = "{\"nodeId\": \"n\"" + String(repeating: " ", count: GatewayConfiguration.maxFileBytes) + "}"
        try big.write(toFile: path, atomically: true, encoding: .utf8)
        for file in [path, "/dev/zero"] {
            do {
                _ = try GatewayConfiguration.load(file: file, environment: [:])
                Issue.record("\(file) was accepted")
            } catch {
                #expect(error.problem == "larger than \(GatewayConfiguration.maxFileBytes) bytes", "\(error)")
            }
        }
        // Just under the limit still loads.
        try ("{\"nodeId\": \"n\"" + String(repeating: " ", count: GatewayConfiguration.maxFileBytes - 20) + "}").write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try GatewayConfiguration.load(file: path, environment: [:]).nodeId == "n")
        let long = String(repeating: "x", count: GatewayConfiguration.maxStringBytes + 1)
        do {
            _ = try GatewayConfiguration.load(file: nil, environment: ["PILEGATE_NODE_ID": long])
            Issue.record("a 4097-byte nodeId was accepted")
        } catch {
            #expect(error.problem.hasPrefix("longer than 4096 bytes"), "\(error.problem.prefix(200))")
        }
        #expect(try GatewayConfiguration.load(file: nil, environment: ["PILEGATE_NODE_ID": String(long.dropLast())]).nodeId.count == 4096)
    }
}
