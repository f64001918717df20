import NIOCore

/// How `ClusterEventRelay` packs many events, or many outcomes, into one NATS message between two
/// nodes (docs/CLUSTER.md, "Backends see one gateway"). At 20,000 relayed events/s a message per
/// event and another per ack cost the nodes more than the events themselves (a header block built
/// and parsed, a subscription hop, a server routing step each); one message per write round and per
/// event-loop turn of acks carries tens to hundreds.
///
/// - Events (header `Pilegate-Batch`): per event a 2-byte big-endian id length, the id, a 4-byte
///   length and the event's JSON as it goes to the socket.
/// - Outcomes (header `Pilegate-Outcomes`): one line per event, `<outcome> <instance key> <event id>`,
///   where outcome is `acked` or a `BackendEventReceipt.Failure` raw value. Keys are printable
///   ASCII without spaces (`ClusterBackendAdvert.Instance.isValid`), and so are event ids.
///
/// A node sends batches only to a node whose advertisement says it reads them (`batches`), and
/// answers a batch with batched outcomes: a node of an earlier version in the same cluster keeps
/// getting and sending one message per event.
enum ClusterRelayBatch {
    /// A batch is closed at this many bytes (well under NATS's default 1 MiB `max_payload`).
    static let maximumBytes = 256 * 1024

    static func append(id: String, text: ByteBuffer, to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt16(truncatingIfNeeded: id.utf8.count))
        buffer.writeString(id)
        buffer.writeInteger(UInt32(truncatingIfNeeded: text.readableBytes))
        var copy = text
        buffer.writeBuffer(&copy)
    }

    /// The events of a batch, in order; nil when the bytes are not a whole batch (nothing is
    /// handed out from a damaged message).
    static func events(in payload: ByteBuffer) -> [(id: String, text: ByteBuffer)]? {
        var buffer = payload
        var events: [(id: String, text: ByteBuffer)] = []
        while buffer.readableBytes > 0 {
            guard let idLength = buffer.readInteger(as: UInt16.self), idLength > 0,
                let id = buffer.readString(length: Int(idLength)),
                let textLength = buffer.readInteger(as: UInt32.self),
                let text = buffer.readSlice(length: Int(textLength))
            else { return nil }
            events.append((id, text))
        }
        return events
    }

    static func appendOutcome(_ outcome: BackendEventReceipt.Outcome, key: String, id: String, to buffer: inout ByteBuffer) {
        switch outcome {
        case .acked: buffer.writeStaticString("acked")
        case .failed(let f): buffer.writeString(f.rawValue)
        }
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(key)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(id)
        buffer.writeInteger(UInt8(ascii: "\n"))
    }

    /// The outcome lines of a message; a line that does not parse is skipped (its event comes back
    /// by the ack timeout, as a lost message's would).
    static func outcomes(in payload: ByteBuffer) -> [(outcome: BackendEventReceipt.Outcome, key: Substring, id: Substring)] {
        let text = String(buffer: payload)
        var out: [(outcome: BackendEventReceipt.Outcome, key: Substring, id: Substring)] = []
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, !parts[1].isEmpty, !parts[2].isEmpty else { continue }
            let outcome: BackendEventReceipt.Outcome
            if parts[0] == "acked" {
                outcome = .acked
            } else if let f = BackendEventReceipt.Failure(rawValue: String(parts[0])) {
                outcome = .failed(f)
            } else {
                continue
            }
            out.append((outcome, parts[1], parts[2]))
        }
        return out
    }
}
