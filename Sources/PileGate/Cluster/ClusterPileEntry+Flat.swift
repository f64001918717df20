import Foundation
import NIOCore

extension ClusterPileEntry {
    /// Reads an entry as `JSONEncoder` writes it, without `JSONDecoder`: every node applies every
    /// login and logout of the whole fleet from the directory's watch (96,000 of them per node in a
    /// login wave of the 96,000-pile load test, where `JSONDecoder` took 6 % of the machine).
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
