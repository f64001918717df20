import Foundation

/// The process's environment and resident memory, for the scale check.
enum ProcessInfoShim {
    static func environment(_ name: String) -> String? {
        ProcessInfo.processInfo.environment[name]
    }

    /// VmRSS from /proc/self/status (Linux); 0 elsewhere.
    static func residentKB() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        return 0
    }
}
