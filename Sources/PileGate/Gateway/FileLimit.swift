#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The process's file limit, read once at start, and the number of pile connections it leaves
/// room for.
///
/// Every pile connection is a file descriptor. Without a cap, a flood of connections that never
/// log in uses them all: accept() then fails for the API as well (health checks time out),
/// SQLite cannot open a reader, and nothing says why. So the gateway raises its soft limit to the
/// hard limit, keeps `reserve` descriptors for everything that is not a pile (its own event
/// loops, listeners and SQLite files, about 50, plus API requests and backend WebSockets), and
/// refuses pile connections above the rest (`AdmissionRefusal.fileLimit`, counted and logged).
/// The reserve is a fixed number rather than "what is open at start" plus a margin: in a
/// process that also does other work (the test suite runs many gateways at once) a count taken
/// at one moment would fix a cap for the gateway's whole life.
struct FileLimit: Sendable {
    /// The soft limit after raising it (RLIMIT_NOFILE).
    var limit: Int
    /// Descriptors open when it was read (logged, for the operator's judgement of the reserve).
    var open: Int
    var reserve: Int

    /// Pile connections that fit: the limit minus the reserve (at least 0).
    var pileConnections: Int { max(0, limit - reserve) }

    /// Raises the soft limit as far as the hard limit allows and reads it.
    static func read(reserve: Int) -> FileLimit {
        #if os(Linux)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        var rl = rlimit()
        var limit = Int.max
        if getrlimit(resource, &rl) == 0 {
            if rl.rlim_cur < rl.rlim_max {
                var raised = rl
                raised.rlim_cur = rl.rlim_max
                #if canImport(Darwin)
                // macOS refuses a soft limit above OPEN_MAX for RLIM_INFINITY hard limits.
                raised.rlim_cur = min(rl.rlim_max, rlim_t(OPEN_MAX))
                #endif
                if setrlimit(resource, &raised) == 0 { rl = raised }
            }
            limit = rl.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(rl.rlim_cur)
        }
        return FileLimit(limit: limit, open: openDescriptors(), reserve: reserve)
    }

    /// Open descriptors of this process (`/dev/fd` lists them on Linux and macOS).
    static func openDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/dev/fd").count) ?? 0
    }
}
