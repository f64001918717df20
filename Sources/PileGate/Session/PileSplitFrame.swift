import NIOCore

/// The start of a frame split across reads, kept by `PileSessionHandler` until the reads that
/// complete it arrive (at most one frame, ≤ 259 bytes). Boxed so that a session with nothing
/// pending — every idle one, and nearly every one between reads — pays one pointer in the handler
/// for it instead of an inline 24-byte `ByteBuffer?`; the box is made when a frame splits, reused
/// while it arrives, and dropped when it completes.
final class PileSplitFrame {
    /// nil while the handler has taken the bytes out to append a read to them (so that they are
    /// uniquely referenced and the append does not copy).
    var bytes: ByteBuffer?

    init(_ bytes: ByteBuffer) {
        self.bytes = bytes
    }
}
