import Atomics
import Logging

/// The process's log level (`logLevel`), changeable while it runs: `pilegate serve` installs
/// `LiveLevelLogHandler`s that read it, and a configuration reload sets it.
public final class LiveLogLevel: Sendable {
    private let raw: ManagedAtomic<Int>
    private static let levels = Logger.Level.allCases

    public init(_ level: Logger.Level) {
        raw = ManagedAtomic(Self.levels.firstIndex(of: level) ?? 2)
    }

    public var level: Logger.Level {
        get { Self.levels[raw.load(ordering: .relaxed)] }
        set { raw.store(Self.levels.firstIndex(of: newValue) ?? 2, ordering: .relaxed) }
    }
}
