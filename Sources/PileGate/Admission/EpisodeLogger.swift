import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Logs a kind of event at most once per interval per key, with how many were suppressed, so a
/// storm produces a few lines rather than one per connection.
final class EpisodeLogger: Sendable {
    private let logger: Logger
    private let interval: TimeAmount
    private let state = NIOLockedValueBox<[String: (last: NIODeadline, suppressed: Int)]>([:])

    init(logger: Logger, interval: TimeAmount) {
        self.logger = logger
        self.interval = interval
    }

    func log(_ level: Logger.Level, _ message: String, key: String, metadata: Logger.Metadata) {
        let now = NIODeadline.now()
        let suppressed: Int? = state.withLockedValue { map in
            if let e = map[key], now - e.last < interval {
                map[key] = (e.last, e.suppressed + 1)
                return nil
            }
            let s = map[key]?.suppressed ?? 0
            map[key] = (now, 0)
            if map.count > 10_000 { map = map.filter { now - $0.value.last < interval } }
            return s
        }
        guard let suppressed else { return }
        var md = metadata
        if suppressed > 0 { md["suppressed"] = "\(suppressed)" }
        logger.log(level: level, "\(message)", metadata: md)
    }
}
