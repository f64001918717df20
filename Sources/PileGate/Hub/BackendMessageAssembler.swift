import NIOCore

/// Collects a backend socket's WebSocket data frames into messages, up to a size limit.
///
/// BACKEND-PROTOCOL promises that a malformed message never closes the socket; a message over the
/// limit is one. Hummingbird's own message reader closes the socket (1009) instead, so the
/// connection reads frames and assembles them here: a message that grows past the limit is not
/// buffered further, its remaining fragments are dropped, and it is reported once, when its last
/// fragment arrives, so the connection can answer with an `error` and carry on.
///
/// (What cannot be skipped this way is one single *frame* larger than the WebSocket decoder's
/// frame bound — the decoder holds a whole frame before anything sees it; see
/// `HubConfiguration.maxFrameBytes`.)
struct BackendMessageAssembler {
    enum Kind: Equatable {
        case text
        case binary
        case continuation
    }

    enum Output: Equatable {
        case text(String)
        case binary
        /// A message of this many bytes, over the limit, was dropped.
        case tooLarge(bytes: Int)
        /// A continuation without a message, or a new message before the last one ended (the
        /// unfinished one is dropped).
        case outOfOrder
    }

    let limit: Int
    private var kind: Kind?
    private var collected: ByteBuffer?
    /// Bytes of the current message so far (also while dropping an oversized one).
    private var size = 0
    private var dropping = false

    init(limit: Int) {
        self.limit = limit
    }

    /// Takes one frame; returns a complete message or a problem, or nil while a message is
    /// still arriving (or the frame was an orphan continuation already reported).
    mutating func receive(_ opcode: Kind, _ data: ByteBuffer, fin: Bool) -> Output? {
        switch opcode {
        case .text, .binary:
            let interrupted = kind != nil
            reset()
            kind = opcode
            append(data)
            let done = fin ? finish() : nil
            guard interrupted else { return done }
            // The unfinished message is dropped and reported first; a message this frame
            // completed waits in `next()`.
            queued = done
            return .outOfOrder
        case .continuation:
            guard kind != nil else { return .outOfOrder }
            append(data)
            return fin ? finish() : nil
        }
    }

    /// A second output of the last `receive` (a message completed by the frame that also
    /// interrupted an unfinished one); nil otherwise.
    private var queued: Output?

    mutating func next() -> Output? {
        defer { queued = nil }
        return queued
    }

    private mutating func append(_ data: ByteBuffer) {
        size += data.readableBytes
        guard !dropping else { return }
        if size > limit {
            dropping = true
            collected = nil
            return
        }
        if collected == nil {
            collected = data
        } else {
            var d = data
            collected?.writeBuffer(&d)
        }
    }

    private mutating func finish() -> Output? {
        defer { reset() }
        if dropping { return .tooLarge(bytes: size) }
        switch kind {
        case .text: return .text(String(buffer: collected ?? ByteBuffer()))
        case .binary: return .binary
        default: return nil
        }
    }

    private mutating func reset() {
        kind = nil
        collected = nil
        size = 0
        dropping = false
    }
}
