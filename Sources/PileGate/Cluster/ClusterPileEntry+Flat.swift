import Foundation
import NIOCore

extension ClusterPileEntry {
    /// The entry as JSON, written without `JSONEncoder` (a node writes one per login; `JSONEncoder`
    /// was about 1 % of a node's CPU in the 96,000-pile login wave). Read back by `flat` or by
    /// `JSONDecoder` alike.
    func json() -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: 96 + node.utf8.count + address.utf8.count + lane.utf8.count)
        b.writeStaticString("{\"node\":")
        Self.writeJSONString(node, to: &b)
        b.writeStaticString(",\"incarnation\":")
        b.writeString(incarnation.description)
        b.writeStaticString(",\"since\":")
        b.writeString(since.description)
        b.writeStaticString(",\"address\":")
        Self.writeJSONString(address, to: &b)
        b.writeStaticString(",\"lane\":")
        Self.writeJSONString(lane, to: &b)
        b.writeStaticString(",\"connection\":")
        b.writeString(connection.description)
        b.writeStaticString("}")
        return b
    }

    private static func writeJSONString(_ text: String, to b: inout ByteBuffer) {
        b.writeInteger(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                b.writeInteger(UInt8(ascii: "\\"))
                b.writeInteger(byte)
            case ..<0x20:
                b.writeStaticString("\\u00")
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                b.writeInteger(hex[Int(byte >> 4)])
                b.writeInteger(hex[Int(byte & 0xF)])
            default:
                b.writeInteger(byte)
            }
        }
        b.writeInteger(UInt8(ascii: "\""))
    }

    /// Reads an entry as `JSONEncoder` and `json()` write it, without `JSONDecoder`: a node loads
    /// the whole directory when it starts and after a reconnect, and while a member of an earlier
    /// version is in the cluster it applies every login and logout of the fleet from the bucket's
    /// watch (`JSONDecoder` took 6 % of the machine in the 96,000-pile login wave).
    ///
    /// Only a flat object whose strings have no escapes and whose numbers are plain decimals is
    /// taken; nil for anything else, and the caller decodes it in full (`decoded(from:)`).
    static func flat(_ bytes: ByteBufferView) -> ClusterPileEntry? {
        var node: String?
        var incarnation: Double?
        var since: Double?
        var address: String?
        var lane: String?
        var connection: UInt64?
        var i = bytes.startIndex
        let end = bytes.endIndex
        func skipSpace() { while i < end, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i += 1 } }
        func take(_ byte: UInt8) -> Bool {
            skipSpace()
            guard i < end, bytes[i] == byte else { return false }
            i += 1
            return true
        }
        func plainString() -> Range<Int>? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = i
            while i < end, bytes[i] != UInt8(ascii: "\"") {
                guard bytes[i] != UInt8(ascii: "\\"), bytes[i] >= 0x20 else { return nil }
                i += 1
            }
            guard i < end else { return nil }
            defer { i += 1 }
            return start..<i
        }
        func isKey(_ r: Range<Int>, _ key: StaticString) -> Bool { key.withUTF8Buffer { bytes[r].elementsEqual($0) } }
        guard take(UInt8(ascii: "{")) else { return nil }
        repeat {
            guard let key = plainString(), take(UInt8(ascii: ":")) else { return nil }
            skipSpace()
            guard i < end else { return nil }
            if bytes[i] == UInt8(ascii: "\"") {
                guard let value = plainString() else { return nil }
                let text = String(decoding: bytes[value], as: UTF8.self)
                if isKey(key, "node") {
                    node = text
                } else if isKey(key, "address") {
                    address = text
                } else if isKey(key, "lane") {
                    lane = text
                }
            } else {
                let start = i
                while i < end, bytes[i] != UInt8(ascii: ","), bytes[i] != UInt8(ascii: "}"), bytes[i] > 0x20 { i += 1 }
                let number = bytes[start..<i]
                guard !number.isEmpty, number.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E || $0 == 0x2D || $0 == 0x65 || $0 == 0x45 || $0 == 0x2B })
                else { return nil }  // true/false/null, an object or array: not an entry this reads
                if isKey(key, "connection") {
                    guard let n = UInt64(String(decoding: number, as: UTF8.self)) else { return nil }
                    connection = n
                } else if isKey(key, "incarnation") || isKey(key, "since") {
                    guard let d = Double(String(decoding: number, as: UTF8.self)), d.isFinite else { return nil }
                    if isKey(key, "incarnation") { incarnation = d } else { since = d }
                }
            }
        } while take(UInt8(ascii: ","))
        guard take(UInt8(ascii: "}")) else { return nil }
        skipSpace()
        guard i == end, let node, let incarnation, let since, let address, let lane, let connection else { return nil }
        return ClusterPileEntry(node: node, incarnation: incarnation, since: since, address: address, lane: lane, connection: connection)
    }

    /// The entry in `bytes`: the flat read, else `JSONDecoder`; nil when neither reads it.
    static func decoded(from bytes: ByteBufferView, decoder: JSONDecoder) -> ClusterPileEntry? {
        flat(bytes) ?? (try? decoder.decode(ClusterPileEntry.self, from: Data(bytes)))
    }
}
