import ArgumentParser
import Foundation
import Testing

@testable import PileGateCLI

@Suite("pilegate tail: arguments, the subscribe message, the summary")
struct TailCommandTests {
    @Test("bad arguments are refused before connecting", arguments: [
        ["--duration", "-1"], ["--warmup", "-0.5"], ["--stats-interval", "0"], ["--duration", "inf"],
        ["--duration", "2000000"], ["--max-in-flight", "0"], ["--max-in-flight", "100001"], ["--events", " , "],
        ["--api", "http://"], ["--api", "https:///"], ["--api", ""],
    ])
    func refused(_ args: [String]) {
        #expect(throws: (any Error).self) { _ = try TailCommand.parse(args) }
    }

    @Test("the API URL becomes the events WebSocket URL")
    func webSocketURL() throws {
        #expect(try TailCommand.webSocketURL("http://127.0.0.1:8780/") == "ws://127.0.0.1:8780/v1/events")
        #expect(try TailCommand.webSocketURL("https://gw.example:443") == "wss://gw.example:443/v1/events")
        #expect(try TailCommand.webSocketURL("localhost:8780") == "ws://localhost:8780/v1/events")
        #expect(try TailCommand.webSocketURL("wss://h") == "wss://h/v1/events")
    }

    @Test("the subscribe message is valid JSON with the options given, names escaped")
    func subscribe() throws {
        let command = try TailCommand.parse([
            "--service", "bill\"ing", "--instance", "b\\1", "--lane", "canary", "--events", "transaction_record, login",
            "--max-in-flight", "64", "--durable",
        ])
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(command.subscribeMessage().utf8)) as? [String: Any])
        #expect(json["type"] as? String == "subscribe")
        #expect(json["service"] as? String == "bill\"ing")
        #expect(json["instance"] as? String == "b\\1")
        #expect(json["lane"] as? String == "canary")
        #expect(json["events"] as? [String] == ["transaction_record", "login"])
        #expect(json["maxInFlight"] as? Int == 64)
        #expect(json["durable"] as? Bool == true)
        let all = try TailCommand.parse([])
        let allJSON = try JSONSerialization.jsonObject(with: Data(all.subscribeMessage().utf8)) as? [String: Any]
        #expect(allJSON?["events"] as? [String] == ["*"])
        #expect(allJSON?["maxInFlight"] == nil)
    }

    @Test("jsonString escapes quotes, backslashes and control characters")
    func jsonString() throws {
        let s = TailCommand.jsonString("a\"b\\c\u{01}\n中")
        #expect(s == #""a\"b\\c\u0001\u000a中""#)
        #expect(try JSONSerialization.jsonObject(with: Data(s.utf8), options: .fragmentsAllowed) as? String == "a\"b\\c\u{01}\n中")
    }

    @Test("stats: the report line and the summary's quantiles, warm-up left out of the summary")
    func stats() throws {
        var stats = TailStats()
        stats.record(latency: 9_000, countInSummary: false, at: 0)
        for ms in 1...100 { stats.record(latency: Int64(ms * 1000), countInSummary: true, at: 0) }
        stats.record(latency: nil, countInSummary: true, at: 0)
        let window = stats.takeWindow()
        #expect(window.events == 102)
        #expect(window.line(elapsed: 10, seconds: 2) == "t=10s events/s=51 latency p50=50.00ms p99=99.00ms max=100.00ms")
        #expect(stats.takeWindow().events == 0)
        let summary = stats.summary(from: 0, to: 4_000_000)
        #expect(summary.events == 100 && summary.totalEvents == 102 && summary.unparsed == 1)
        let json = try #require(
            try JSONSerialization.jsonObject(
                with: Data(summary.json(service: "s", instance: "i", failure: "boom", subscribed: true).utf8))
                as? [String: Any])
        #expect(json["eventsPerSecond"] as? Double == 25)
        let latency = try #require(json["latencyMs"] as? [String: Any])
        #expect(latency["p50"] as? Double == 50 && latency["p99"] as? Double == 99 && latency["max"] as? Double == 100)
        #expect(latency["mean"] as? Double == 50.5)
        #expect(json["error"] as? String == "boom")
    }
}
