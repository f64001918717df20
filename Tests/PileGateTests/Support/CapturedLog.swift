import Foundation

/// Messages a `CaptureHandler` received.
final class CapturedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    var messages: [String] { lock.withLock { list } }
    func append(_ m: String) { lock.withLock { list.append(m) } }
}
