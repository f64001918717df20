import Foundation
import NIOCore
@testable import PileGate
import Testing

/// Backend messages up to `hubMaxMessageBytes` (1 MiB) are read; a larger one gets an `error` and
/// the socket stays open (issue 14.12: messages over 16 KiB used to close it with 1009).
@Suite("Backend message size")
struct BackendMessageSizeTests {
    /// `{"type":"frobnicate","pad":"xxxx…"}` of exactly `bytes` bytes.
    private func padded(_ bytes: Int) -> String {
        let head = #"{"type":"frobnicate","pad":""#
        let tail = #""}"#
        return head + String(repeating: "x", count: bytes - head.utf8.count - tail.utf8.count) + tail
    }

    @Test("messages up to 1 MiB are read, as one frame or many; larger ones get message_too_large and the socket stays open")
    func limits() async throws {
        try await withHub { gw, _ in
            let b = try await TestBackend.connect(apiPort: gw.apiPort)
            // 100 KiB in one frame, and exactly 1 MiB in 16 KiB fragments: read and answered.
            b.send(padded(100 << 10))
            try await b.waitFor("unknown_type for 100 KiB") { $0["error"] as? String == "unknown_type" }
            b.sendFragmented(padded(1 << 20))
            try await b.waitFor("second unknown_type") { _ in b.messages.filter { $0["error"] as? String == "unknown_type" }.count == 2 }
            // Over the limit: as one frame (within the frame bound) and in fragments.
            b.send(padded((1 << 20) + 1))
            let tooLarge = try await b.waitFor("message_too_large") { $0["error"] as? String == "message_too_large" }
            #expect((tooLarge["message"] as? String)?.contains("1048576") == true)
            b.sendFragmented(padded(3 << 20))
            try await b.waitFor("second message_too_large") { _ in
                b.messages.filter { $0["error"] as? String == "message_too_large" }.count == 2
            }
            // The socket still works.
            try await b.subscribe(service: "s", instance: "i", events: ["pile_online"])
            let pile = try await gw.pile("55010600003001", guns: 1) { $0.requestBillingModel = false }
            try await b.waitForEvent("pile_online")
            #expect(!b.isClosed)
            await pile.stop()
            await b.close()
        }
    }

    @Test("the assembler joins fragments, drops an oversized message once at its end, reports orphans")
    func assembler() {
        var a = BackendMessageAssembler(limit: 10)
        #expect(a.receive(.text, ByteBuffer(string: "abc"), fin: false) == nil)
        #expect(a.receive(.continuation, ByteBuffer(string: "def"), fin: true) == .text("abcdef"))
        #expect(a.receive(.text, ByteBuffer(string: "0123456789"), fin: true) == .text("0123456789"))
        #expect(a.receive(.text, ByteBuffer(string: "012345"), fin: false) == nil)
        #expect(a.receive(.continuation, ByteBuffer(string: "6789X"), fin: false) == nil)
        #expect(a.receive(.continuation, ByteBuffer(string: "YZ"), fin: true) == .tooLarge(bytes: 13))
        #expect(a.receive(.continuation, ByteBuffer(string: "x"), fin: true) == .outOfOrder)
        #expect(a.receive(.binary, ByteBuffer(string: "b"), fin: true) == .binary)
        // A new message before the last one ended: the broken one is reported, the new one follows.
        #expect(a.receive(.text, ByteBuffer(string: "half"), fin: false) == nil)
        #expect(a.receive(.text, ByteBuffer(string: "whole"), fin: true) == .outOfOrder)
        #expect(a.next() == .text("whole"))
        #expect(a.next() == nil)
    }
}
