import Foundation
import NIOConcurrencyHelpers
import YKC

/// `--acked-bills-out`: one trade serial per line, appended with one write(2) per 0x40 (O_APPEND,
/// no user-space buffer), so every line is in the file as soon as the pile has deleted its bill.
/// Called from many event loops; the lock keeps lines whole and counts failed writes.
final class AckedBillsFile: Sendable {
    private struct State {
        var fd: Int32
        var errors = 0
    }
    private let state: NIOLockedValueBox<State>

    init(path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        state = NIOLockedValueBox(State(fd: fd))
    }

    var errors: Int { state.withLockedValue { $0.errors } }

    func append(_ serial: TradeSerial) {
        let bytes = Array((serial.description + "\n").utf8)
        state.withLockedValue { s in
            guard s.fd >= 0 else { return }
            let ok = bytes.withUnsafeBytes { buffer -> Bool in
                guard let base = buffer.baseAddress else { return false }
                var offset = 0
                while offset < buffer.count {
                    let n = write(s.fd, base + offset, buffer.count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        return false
                    }
                    offset += n
                }
                return true
            }
            if !ok { s.errors += 1 }
        }
    }

    func close() {
        state.withLockedValue { s in
            guard s.fd >= 0 else { return }
            _ = Foundation.close(s.fd)
            s.fd = -1
        }
    }
}
