import Foundation
import NIOCore
import PileGate
import Testing

extension ReliabilityTests {
    /// HTTP details of the API, over real sockets: methods a path does not take, HEAD, the
    /// WebSocket path asked without an upgrade, and connections that stall.
    @Suite("API: methods, HEAD, upgrade-required and request timeouts")
    struct APIProtocolTests {
        @Test("a known path with a method it does not take is 405 with Allow; HEAD /healthz is 200")
        func methodNotAllowed() async throws {
            try await withGateway { gw in
                let post = try await gw.http("POST", "/healthz", body: "{}")
                #expect(post.status == 405)
                #expect(post.headers["allow"] == "GET, HEAD", "\(post.headers)")
                #expect(post.object["error"] as? String == "method_not_allowed")
                #expect((post.object["message"] as? String)?.contains("POST is not allowed on /healthz") == true, "\(post.body)")
                let delete = try await gw.http("DELETE", "/v1/stats")
                #expect(delete.status == 405)
                #expect(delete.headers["allow"] == "GET, HEAD")
                // A path with a parameter: GET, PUT and DELETE are routes, POST is not.
                let pile = try await gw.http("POST", "/v1/piles/12345678901234")
                #expect(pile.status == 405)
                #expect(pile.headers["allow"] == "DELETE, GET, HEAD, PUT", "\(pile.headers)")
                // An unknown path stays 404.
                let unknown = try await gw.http("GET", "/v1/nothing-here")
                #expect(unknown.status == 404)
                #expect(unknown.object["error"] as? String == "not_found")
                let head = try await gw.http("HEAD", "/healthz")
                #expect(head.status == 200)
                #expect(head.body.isEmpty)
            }
        }

        @Test("a plain GET /v1/events without an upgrade is 426 with a message, not an empty 200")
        func eventsWithoutUpgrade() async throws {
            try await withHub { gw, _ in
                let plain = try await gw.http("GET", "/v1/events")
                #expect(plain.status == 426)
                #expect(plain.headers["upgrade"] == "websocket")
                #expect(plain.object["error"] as? String == "upgrade_required")
                #expect((plain.object["message"] as? String)?.contains("WebSocket") == true, "\(plain.body)")
                // A real backend still connects.
                let backend = try await TestBackend.connect(apiPort: gw.apiPort)
                try await backend.subscribe(service: "s", instance: "i", events: ["heartbeat"])
                await backend.close()
            }
        }

        @Test("a first request the HTTP parser rejects (a control character in a header) is answered 400 with an error document and closed at once")
        func malformedFirstRequest() async throws {
            // apiRequestTimeout stays at its default (30 s): the answer must not wait for a timer.
            try await withGateway { gw in
                let requests = [
                    "GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pgt_x\u{0}\r\n\r\n",
                    "GET /v1/piles/1 HTTP/1.1\r\nHost: x\r\nX-A: a\u{1}b\r\nContent-Length: 4\r\n\r\n{\"a\"",
                    "GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
                    // A request line over the decoder's 80 KiB head limit.
                    "GET /v1/piles?after=" + String(repeating: "1", count: 90_000) + " HTTP/1.1\r\nHost: x\r\n\r\n",
                ]
                for text in requests {
                    let raw = try await RawClient.connect(port: gw.apiPort)
                    try await raw.send(Array(text.utf8))
                    let closed = await gw.eventually(timeout: 5) { raw.isClosed }
                    #expect(closed, "still open 5 s after \(text.prefix(200).debugDescription)")
                    let answer = String(decoding: raw.receivedBytes, as: UTF8.self)
                    #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer.debugDescription)")
                    let body = answer.components(separatedBy: "\r\n\r\n").dropFirst().joined()
                    let doc = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
                    #expect(doc?["error"] as? String == "bad_request", "\(answer.debugDescription)")
                    #expect((doc?["message"] as? String)?.contains("malformed HTTP request") == true)
                    await raw.close()
                }
                #expect(try await gw.http("GET", "/healthz").status == 200)
            }
        }

        /// The HTTP responses in `bytes`, split by their Content-Length (status, body).
        static func responses(_ bytes: [UInt8]) -> [(status: Int, body: String)] {
            var out: [(Int, String)] = []
            var rest = bytes[...]
            let blank: [UInt8] = Array("\r\n\r\n".utf8)
            while let end = rest.firstRange(of: blank) {
                let head = String(decoding: rest[rest.startIndex..<end.lowerBound], as: UTF8.self)
                let lines = head.components(separatedBy: "\r\n")
                let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
                let length =
                    lines.dropFirst().compactMap { line -> Int? in
                        let parts = line.split(separator: ":", maxSplits: 1)
                        guard parts.count == 2, parts[0].lowercased() == "content-length" else { return nil }
                        return Int(parts[1].trimmingCharacters(in: .whitespaces))
                    }.first ?? 0
                let bodyStart = end.upperBound
                guard rest.endIndex - bodyStart >= length else { break }
                out.append((status, String(decoding: rest[bodyStart..<bodyStart + length], as: UTF8.self)))
                rest = rest[(bodyStart + length)...]
            }
            return out
        }

        @Test("a later request of a keep-alive connection that the parser rejects gets the same 400 error document and the connection closes, after the responses owed before it")
        func malformedLaterRequest() async throws {
            try await withHub { gw, _ in
                let good = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                let bad = [
                    "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\u{0}b\r\n\r\n",
                    "GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
                    // A malformed chunk in the second request's body.
                    "PUT /v1/piles/1/key HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
                ]
                for text in bad {
                    // One request answered, then the malformed one on the same connection.
                    let raw = try await RawClient.connect(port: gw.apiPort)
                    try await raw.send(Array(good.utf8))
                    #expect(await gw.eventually { Self.responses(raw.receivedBytes).count == 1 })
                    #expect(!raw.isClosed)
                    try await raw.send(Array(text.utf8))
                    // Two pipelined: the first answered in full, then the 400.
                    let pipelined = try await RawClient.connect(port: gw.apiPort)
                    try await pipelined.send(Array((good + text).utf8))
                    for client in [raw, pipelined] {
                        let closed = await gw.eventually(timeout: 5) { client.isClosed }
                        #expect(closed, "still open 5 s after \(text.debugDescription)")
                        let answers = Self.responses(client.receivedBytes)
                        let all = String(decoding: client.receivedBytes, as: UTF8.self)
                        #expect(answers.map(\.status) == [200, 400], "\(all.debugDescription)")
                        let doc = answers.last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.body.utf8)) as? [String: Any] }
                        #expect(doc?["error"] as? String == "bad_request", "\(all.debugDescription)")
                        #expect((doc?["message"] as? String)?.contains("malformed HTTP request") == true)
                        await client.close()
                    }
                }
                // Keep-alive connections with good requests, and WebSocket backends, work as before.
                let raw = try await RawClient.connect(port: gw.apiPort)
                try await raw.send(Array((good + good + good).utf8))
                #expect(await gw.eventually { Self.responses(raw.receivedBytes).count == 3 })
                #expect(Self.responses(raw.receivedBytes).map(\.status) == [200, 200, 200])
                #expect(!raw.isClosed)
                await raw.close()
                let backend = try await TestBackend.connect(apiPort: gw.apiPort)
                try await backend.subscribe(service: "s", instance: "i", events: ["heartbeat"])
                await backend.close()
            }
        }

        @Test("a body over a route's limit is 413 with an error document")
        func bodyTooLarge() async throws {
            try await withGateway { gw in
                let big = "{\"key\":\"" + String(repeating: "0", count: PileKeyStore.maxRequestBytes + 10) + "\"}"
                let answer = try await gw.http("PUT", "/v1/piles/1/key", body: big)
                #expect(answer.status == 413)
                #expect(answer.object["error"] as? String == "body_too_large", "\(answer.body)")
                #expect((answer.object["message"] as? String)?.contains("too large") == true, "\(answer.body)")
            }
        }

        @Test("a half-sent request, a silent connection and an idle keep-alive connection are closed after apiRequestTimeout")
        func stalledConnections() async throws {
            try await withGateway({ $0.apiRequestTimeout = 2 }) { gw in
                let halfHead = try await RawClient.connect(port: gw.apiPort)
                try? await halfHead.send(Array("GET /healthz HTTP/1.1\r\nHost: x\r\n".utf8))
                let silent = try await RawClient.connect(port: gw.apiPort)
                let halfBody = try await RawClient.connect(port: gw.apiPort)
                try? await halfBody.send(Array("PUT /v1/piles/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":".utf8))
                let idle = try await RawClient.connect(port: gw.apiPort)
                try await idle.send(Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
                let all = [halfHead, silent, halfBody, idle]
                let closed = await gw.eventually(timeout: 10) { all.allSatisfy(\.isClosed) }
                #expect(closed, "closed: \(all.map(\.isClosed))")
                #expect(String(decoding: idle.receivedBytes, as: UTF8.self).hasPrefix("HTTP/1.1 200"), "the complete request was answered first")
                for c in all { await c.close() }
                // A fresh request is answered as usual.
                #expect(try await gw.http("GET", "/healthz").status == 200)
            }
        }
    }
}
