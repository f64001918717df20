import Foundation
@testable import PileGate
import Testing
import YKC

@Suite("API error bodies: one shape, written one way")
struct APIErrorBodyTests {
    @Test("the body is {\"error\",\"message\"} with the message escaped")
    func body() throws {
        let body = APIErrorBody("bad_request", "quote \" backslash \\ line\n中")
        let text = String(buffer: body.json)
        #expect(text == #"{"error":"bad_request","message":"quote \" backslash \\ line\n中"}"#)
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String])
        #expect(parsed == ["error": "bad_request", "message": "quote \" backslash \\ line\n中"])
    }

    @Test("members go into a larger object after what it carries first")
    func members() {
        var w = JSONWriter()
        w.beginObject()
        w.field("ok", false)
        APIErrorBody("pile_offline", "gone").writeMembers(into: &w)
        w.endObject()
        #expect(w.string == #"{"ok":false,"error":"pile_offline","message":"gone"}"#)
    }

    @Test("over HTTP: bad pile ids in a path and in after get one error body naming the one rule")
    func overHTTP() async throws {
        try await withGateway { gw in
            for (method, path) in [("GET", "/v1/piles/123A"), ("DELETE", "/v1/piles/320106000192361/connection"), ("GET", "/v1/piles?after=abc")] {
                let answer = try await gw.http(method, path)
                #expect(answer.status == 400, "\(path)")
                #expect(answer.headers["content-type"] == "application/json")
                #expect((answer.object["message"] as? String)?.contains(PileID.inputRule) == true, "\(path): \(answer.body)")
                #expect(answer.object.count == 2, "\(path): \(answer.body)")
            }
        }
    }
}
