import Foundation

/// Wall-clock microseconds since 1970 (CLOCK_REALTIME, the clock the gateway stamps with).
enum TailClock {
    static func nowMicros() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000
    }
}
