import Logging
import NIOConcurrencyHelpers
import PileGate
import Testing

/// A value from outside (a backend's service name, a path, a pile's text) must not start a log
/// line of its own: `LiveLevelLogHandler` — the handler `pilegate serve` logs through — escapes
/// control characters in the message and in metadata values before swift-log's stream handler,
/// which writes metadata raw, sees them.
@Suite("Log lines: control characters from input are escaped")
struct LogLineEscaperTests {
    /// Keeps the events the inner handler receives.
    struct EventCapture: LogHandler {
        let events: NIOLockedValueBox<[LogEvent]>
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) { events.withLockedValue { $0.append(event) } }
    }

    @Test("newlines, CR, NUL, ESC, DEL, C1 and U+2028 in messages and metadata values are escaped; clean values pass unchanged")
    func escapesThroughTheHandler() {
        let events = NIOLockedValueBox<[LogEvent]>([])
        let logger = Logger(label: "t") { _ in LiveLevelLogHandler(EventCapture(events: events), level: LiveLogLevel(.trace)) }
        let forged = "b-1\n2026-11-30T00:00:00+0000 critical pilegate: forged"
        logger.info("subscribed \(forged)", metadata: [
            "service": "\(forged)", "path": .string("/v1/\r\u{0}\u{1B}[31m\u{7F}\u{85}\u{2028}x"),
            "list": .array([.string("ok"), .string("a\tb")]), "map": .dictionary(["k": .string("v\nw")]), "clean": "plain é 😀",
        ])
        let event = events.withLockedValue { $0 }.first
        #expect(event?.message.description == #"subscribed b-1\n2026-11-30T00:00:00+0000 critical pilegate: forged"#)
        let m = event?.metadata ?? [:]
        #expect(m["service"]?.description == #"b-1\n2026-11-30T00:00:00+0000 critical pilegate: forged"#)
        #expect(m["path"]?.description == #"/v1/\r\u{0}\u{1B}[31m\u{7F}\u{85}\u{2028}x"#)
        if case .array(let list)? = m["list"] { #expect(list.map(\.description) == ["ok", #"a\tb"#]) } else { Issue.record("list") }
        if case .dictionary(let map)? = m["map"] { #expect(map["k"]?.description == #"v\nw"#) } else { Issue.record("map") }
        #expect(m["clean"]?.description == "plain é 😀")
        for value in m.values { #expect(!value.description.contains("\n")) }
    }

    @Test("escape is the identity on text without control characters")
    func identity() {
        for s in ["", "pile 32010600019236", "é😀", "a\\nb"] { #expect(LogLineEscaper.escape(s) == s) }
        #expect(LogLineEscaper.escape("\u{0}") == #"\u{0}"#)
    }
}
