import Logging

/// A log handler whose level follows a shared `LiveLogLevel`, so a reloaded `logLevel` applies to
/// every logger at once. Setting a logger's own level sets a floor under the shared one (the
/// API's logger stays at `notice` or above): the effective level is the higher of the two.
/// Every event goes out with its control characters escaped (`LogLineEscaper`).
public struct LiveLevelLogHandler: LogHandler {
    private var inner: any LogHandler
    private let shared: LiveLogLevel
    private var floor: Logger.Level = .trace

    public init(_ inner: any LogHandler, level: LiveLogLevel) {
        self.inner = inner
        self.shared = level
    }

    public var logLevel: Logger.Level {
        get { max(shared.level, floor) }
        set { floor = newValue }
    }

    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    public func log(event: LogEvent) {
        // The inner handler keeps the lowest level: the check is ours. Control characters in
        // the message and metadata are escaped (`LogLineEscaper`): values from outside must not
        // start a log line of their own.
        inner.log(event: LogLineEscaper.escape(event))
    }
}
