import Foundation
import NIOCore
@testable import PileGate
import Testing

/// The pile directory's entries are read without `JSONDecoder` when they are as `JSONEncoder`
/// writes them, and exactly as `JSONDecoder` reads them.
@Suite("Cluster pile directory entries read flat")
struct ClusterPileEntryTests {
    @Test("entries written by JSONEncoder read the same flat as through JSONDecoder")
    func sameAsDecoder() throws {
        let entries = [
            ClusterPileEntry(node: "cl-1", incarnation: 1_764_590_000.123456, since: 1_764_590_012.5, address: "127.0.0.7:40122", lane: "", connection: 17),
            ClusterPileEntry(node: "n", incarnation: 0, since: 1e-7, address: "[::1]:5", lane: "gray-2", connection: .max),
            ClusterPileEntry(node: "节点", incarnation: 42, since: 1_764_590_000, address: "10.0.0.9:5000", lane: "金丝雀", connection: 0),
        ]
        for entry in entries {
            let data = try JSONEncoder().encode(entry)
            let bytes = ByteBuffer(bytes: data).readableBytesView
            let flat = try #require(ClusterPileEntry.flat(bytes), "\(String(decoding: data, as: UTF8.self))")
            #expect(flat == entry)
            #expect(flat == (try JSONDecoder().decode(ClusterPileEntry.self, from: data)))
        }
    }

    @Test("entries written by json() read back the same, flat or through JSONDecoder, escapes included")
    func written() throws {
        let entries = [
            ClusterPileEntry(node: "cl-1", incarnation: 1_764_590_000.123456, since: 1_764_590_012.5, address: "127.0.0.7:40122", lane: "", connection: 17),
            ClusterPileEntry(node: "n", incarnation: 0, since: 1e-7, address: "[::1]:5", lane: "gray-2", connection: .max),
            ClusterPileEntry(node: "节点", incarnation: 42, since: 1_764_590_000, address: "10.0.0.9:5000", lane: "金丝雀", connection: 0),
            ClusterPileEntry(node: "q\"uote\\back", incarnation: 1, since: 2, address: "tab\there\u{1}", lane: "/", connection: 3),
        ]
        for entry in entries {
            let json = entry.json()
            #expect(try JSONDecoder().decode(ClusterPileEntry.self, from: Data(json.readableBytesView)) == entry, "\(String(buffer: json))")
            #expect(ClusterPileEntry.decoded(from: json.readableBytesView, decoder: JSONDecoder()) == entry)
        }
        // Plain ones are read flat, without the decoder.
        #expect(ClusterPileEntry.flat(entries[0].json().readableBytesView) == entries[0])
        #expect(ClusterPileEntry.flat(entries[2].json().readableBytesView) == entries[2])
    }

    @Test("escapes, missing or extra kinds of value go to JSONDecoder; what neither reads is nil")
    func declines() {
        func flat(_ t: String) -> ClusterPileEntry? { ClusterPileEntry.flat(ByteBuffer(string: t).readableBytesView) }
        func decoded(_ t: String) -> ClusterPileEntry? {
            ClusterPileEntry.decoded(from: ByteBuffer(string: t).readableBytesView, decoder: JSONDecoder())
        }
        let escaped = #"{"node":"a\/b","incarnation":1,"since":2,"address":"x","lane":"","connection":3}"#
        #expect(flat(escaped) == nil)
        #expect(decoded(escaped)?.node == "a/b", "the full decoder reads what the flat one declines")
        let withNull = #"{"node":"a","incarnation":1,"since":2,"address":"x","lane":"","connection":3,"extra":null}"#
        #expect(flat(withNull) == nil && decoded(withNull)?.node == "a")
        for bad in [
            "", "{}", "[]", #"{"node":"a"}"#, #"{"node":"a","incarnation":1,"since":2,"address":"x","lane":"","connection":-3}"#,
            #"{"node":"a","incarnation":1,"since":2,"address":"x","lane":"","connection":3}trailing"#,
            #"{"node":"a","incarnation":"1","since":2,"address":"x","lane":"","connection":3}"#,
        ] {
            #expect(flat(bad) == nil, "\(bad)")
            #expect(decoded(bad) == nil, "\(bad)")
        }
    }
}
