import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Returns free heap pages to the system now and then.
///
/// glibc keeps memory freed by a thread in that thread's arena. After a login wave (tens of
/// thousands of sessions set up at once, with their transient buffers, JSON and registry
/// batches) the freed pages sit between live session objects and stay in the gateway's RSS;
/// `malloc_trim(0)` releases every whole free page in every arena (`madvise`), leaving the
/// live objects where they are. Measured effect in docs/BENCHMARKS.md (Gateway core).
enum MemoryTrimmer {
    static func run(every seconds: Double, logger: Logger) async {
        while !Task.isCancelled {
            try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
            if Task.isCancelled { return }
            let start = NIODeadline.now()
            trim()
            let micros = (NIODeadline.now() - start).nanoseconds / 1000
            logger.debug("heap trimmed", metadata: ["us": "\(micros)"])
        }
    }

    /// glibc's `malloc_trim` (declared in <malloc.h>, which Swift's Glibc module does not
    /// import), looked up once; nil on other C libraries, where trimming is skipped.
    private static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
        #else
        return nil
        #endif
    }()

    static func trim() {
        _ = mallocTrim?(0)
    }
}
