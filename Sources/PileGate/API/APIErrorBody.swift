import Hummingbird
import NIOCore
import YKC

/// The one error document the gateway gives a client: a stable `error` code for programs and a
/// `message` for people (docs/API.md). Every error body is written by `writeMembers`, so the two
/// members read the same wherever they appear: alone as an HTTP error (`response`), after
/// `"ok":false` in a command's result, after `"type":"error"` on the backend WebSocket.
public struct APIErrorBody: Sendable, Equatable {
    public var code: String
    public var message: String

    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    /// Writes `"error":…,"message":…` into the object `writer` has open.
    public func writeMembers(into writer: inout JSONWriter) {
        writer.field("error", code)
        writer.field("message", message)
    }

    /// `{"error":…,"message":…}`.
    public var json: ByteBuffer {
        var w = JSONWriter()
        w.beginObject()
        writeMembers(into: &w)
        w.endObject()
        return w.buffer
    }

    /// An HTTP answer with `status` and this body.
    public func response(_ status: HTTPResponse.Status) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: json))
    }
}
