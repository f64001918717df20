import NIOCore
import Testing

@testable import YKC

/// Frame types that share one generated layout (spec `layouts`) keep their own identity: code,
/// name, direction, dispatch case and, where the protocol says so, their own item cap.
@Suite("Shared layouts")
struct SharedLayoutTests {
    static let pile = "32010200000001"

    @Test("one body under 0x51, 0x57 and 0x91 decodes as three frame types and encodes under its own code")
    func replyCodes() throws {
        let body = hex("32 01 02 00 00 00 01 01")
        #expect(decode(0x51, body).name == "work_params_reply")
        #expect(decode(0x57, body).name == "billing_model_set_reply")
        #expect(decode(0x91, body).name == "reboot_reply")
        guard case .rebootReply(let m) = decode(0x91, body) else { Issue.record("not 0x91"); return }
        #expect(m.result == .succeeded)
        #expect(RebootReply.code == 0x91 && WorkParamsReply.code == 0x51 && BillingModelSetReply.code == 0x57)
        #expect(RebootReply.name == "reboot_reply" && RebootReply.direction == .pileToPlatform)
        #expect(m.frame(sequence: YKCSequence(0x00, 0x01)).code == 0x91)
        #expect(WorkParamsReply(m).frame(sequence: YKCSequence(0x00, 0x01)).code == 0x51)
        #expect(YKCMessage.rebootReply(m).bodyBytes == body)
    }

    @Test("a 0x58 model set converts to the 0x0A reply with the same body bytes")
    func billingModelConversion() throws {
        let model = try #require(VectorRow.all.first { $0.source == "JCPP" && $0.frameType == "0x0A" })
        let body = Array(model.bytes.dropFirst(6).dropLast(2))
        guard case .billingModelSet(let set) = decode(0x58, body) else { Issue.record("not 0x58"); return }
        let reply = BillingModelReply(set)
        #expect(YKCMessage.billingModelReply(reply).bodyBytes == body)
        #expect(reply.frame(sequence: YKCSequence(0x00, 0x02)).code == 0x0A)
        #expect(BillingModelSet.direction == .platformToPile && BillingModelSet.bodyLength == 90)
    }

    @Test("0x46 clears at most 24 cards and 0x48 queries at most 26, though both share a layout")
    func itemCaps() throws {
        func cards(_ n: Int) throws -> JSONValue {
            let items = Array(repeating: #"{"physicalCardNumber":"0000000000000001"}"#, count: n)
            return try JSONValue.parse(#"{"pileId":"\#(Self.pile)","cards":[\#(items.joined(separator: ","))]}"#)
        }
        #expect(try OfflineCardClear(json: cards(24)).cards.count == 24)
        #expect(throws: YKCJSONError.invalid(field: "cards", reason: "at most 24 items")) {
            try OfflineCardClear(json: cards(25))
        }
        #expect(try OfflineCardQuery(json: cards(26)).cards.count == 26)
        #expect(throws: YKCJSONError.invalid(field: "cards", reason: "at most 26 items")) {
            try OfflineCardQuery(json: cards(27))
        }
        let message = try YKCMessage.fromJSON(name: "offline_card_query", cards(2))
        #expect(message.code == 0x48 && message.bodyBytes.count == 8 + 2 * 8)
    }
}
