import Foundation
import NIOCore

/// Writes the client's side of the protocol (CONNECT, PUB, HPUB, SUB, UNSUB, PING, PONG) into buffers.
/// Subjects are validated here, once, because a space or CRLF in one would desynchronise the stream.
enum ClientProtocol {
    /// Rejects subjects and queue names that the text protocol cannot carry.
    static func validate(subject: String) throws {
        guard !subject.isEmpty,
            !subject.utf8.contains(where: { $0 == 32 || $0 == 9 || $0 == 13 || $0 == 10 })
        else { throw NATSError.invalidSubject(subject) }
    }

    /// `PUB subject [reply] size` or `HPUB subject [reply] header-size total-size`, then the body.
    /// Returns the body size (headers plus payload), which the server compares with `max_payload`.
    @discardableResult
    static func writePublish(
        subject: String, replyTo: String?, headers: NATSHeaders?, payload: ByteBuffer, into buffer: inout ByteBuffer
    ) -> Int {
        var bodySize = payload.readableBytes
        if let headers {
            var block = ByteBuffer()
            let headerLength = headers.write(to: &block)
            buffer.writeStaticString("HPUB ")
            buffer.writeString(subject)
            if let replyTo {
                buffer.writeStaticString(" ")
                buffer.writeString(replyTo)
            }
            bodySize += headerLength
            buffer.writeString(" \(headerLength) \(bodySize)\r\n")
            buffer.writeImmutableBuffer(block)
        } else {
            buffer.writeStaticString("PUB ")
            buffer.writeString(subject)
            if let replyTo {
                buffer.writeStaticString(" ")
                buffer.writeString(replyTo)
            }
            buffer.writeString(" \(payload.readableBytes)\r\n")
        }
        buffer.writeImmutableBuffer(payload)
        buffer.writeStaticString("\r\n")
        return bodySize
    }

    static func writeSubscribe(sid: UInt64, subject: String, queue: String?, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("SUB ")
        buffer.writeString(subject)
        if let queue {
            buffer.writeStaticString(" ")
            buffer.writeString(queue)
        }
        buffer.writeString(" \(sid)\r\n")
    }

    static func writeUnsubscribe(sid: UInt64, max: Int?, into buffer: inout ByteBuffer) {
        if let max {
            buffer.writeString("UNSUB \(sid) \(max)\r\n")
        } else {
            buffer.writeString("UNSUB \(sid)\r\n")
        }
    }

    /// The CONNECT line: headers and no_responders on (request-reply depends on both), echo on,
    /// credentials per `authentication` (URL credentials are used when the options give none).
    /// NKey and JWT credentials sign `nonce` (from the server's INFO); a server that sent none does not
    /// check keys, so then only the JWT (if any) goes out.
    static func writeConnect(
        options: NATSClientOptions, server: NATSServerAddress, tls: Bool, nonce: String? = nil,
        into buffer: inout ByteBuffer
    ) throws {
        var connect = ConnectDocument(name: options.name, tlsRequired: tls)
        switch options.authentication {
        case .none:
            if let (user, password) = server.userInfo {
                if let password {
                    connect.user = user
                    connect.pass = password
                } else {
                    connect.authToken = user
                }
            }
        case .token(let token): connect.authToken = token
        case .userPassword(let user, let password):
            connect.user = user
            connect.pass = password
        case .nkey(let key):
            if let nonce {
                connect.nkey = key.publicKey
                connect.sig = try key.signNonce(nonce)
            }
        case .credentials(let jwt, let key):
            connect.jwt = jwt
            if let nonce { connect.sig = try key.signNonce(nonce) }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        buffer.writeStaticString("CONNECT ")
        buffer.writeBytes(try encoder.encode(connect))
        buffer.writeStaticString("\r\n")
    }

    struct ConnectDocument: Encodable {
        var verbose = false
        var pedantic = false
        var name: String
        var lang = "swift"
        var version = "0.1.0"
        var `protocol` = 1
        var echo = true
        var headers = true
        var noResponders = true
        var tlsRequired: Bool
        var authToken: String?
        var user: String?
        var pass: String?
        var nkey: String?
        var jwt: String?
        var sig: String?

        enum CodingKeys: String, CodingKey {
            case verbose, pedantic, name, lang, version, `protocol`, echo, headers, user, pass, nkey, jwt, sig
            case noResponders = "no_responders"
            case tlsRequired = "tls_required"
            case authToken = "auth_token"
        }
    }
}
