import Foundation
import NIOCore

/// JetStream through one `NATSClient`: acknowledged publishing, stream and consumer management via
/// the `$JS.API` request subjects, pull consumers and KV buckets.
///
/// It is a value holding the client and the API prefix: cheap to copy, safe to share. Every call is a
/// request with a bounded `timeout`; API errors come back as `NATSError.jetStream` with the server's code.
public struct JetStream: Sendable {
    public let client: NATSClient
    /// `$JS.API` unless the account imports JetStream under another prefix (or a domain).
    public let apiPrefix: String
    public let timeout: Duration

    public init(client: NATSClient, apiPrefix: String = "$JS.API", timeout: Duration = .seconds(5)) {
        self.client = client
        self.apiPrefix = apiPrefix
        self.timeout = timeout
    }

    // MARK: Publish

    /// Publishes to a subject a stream captures and waits for the stream's PubAck: only then is the
    /// message stored. `messageID` (header `Nats-Msg-Id`) makes retries safe: a repeat within the stream's
    /// duplicate window is answered with `duplicate: true` and not stored twice. `expectedLastSubjectSequence`
    /// makes the write conditional (compare-and-set on the subject's last sequence, 0: no message yet).
    /// Throws `noResponders` when no stream captures `subject`.
    public func publish(
        _ payload: ByteBuffer, to subject: String, headers: NATSHeaders? = nil, messageID: String? = nil,
        expectedStream: String? = nil, expectedLastSequence: UInt64? = nil,
        expectedLastSubjectSequence: UInt64? = nil, timeout: Duration? = nil
    ) async throws -> PubAck {
        var headers = headers ?? NATSHeaders()
        if let messageID { headers["Nats-Msg-Id"] = messageID }
        if let expectedStream { headers["Nats-Expected-Stream"] = expectedStream }
        if let expectedLastSequence { headers["Nats-Expected-Last-Sequence"] = String(expectedLastSequence) }
        if let expectedLastSubjectSequence {
            headers["Nats-Expected-Last-Subject-Sequence"] = String(expectedLastSubjectSequence)
        }
        let reply = try await client.request(
            payload, to: subject, headers: headers.isEmpty ? nil : headers, timeout: timeout ?? self.timeout
        )
        if reply.status == nil, let ack = PubAck.flat(reply.payload.readableBytesView) { return ack }
        return try Self.decode(PubAck.self, from: reply)
    }

    /// `publish` with a text payload.
    public func publish(_ text: String, to subject: String, messageID: String? = nil) async throws -> PubAck {
        try await publish(ByteBuffer(string: text), to: subject, messageID: messageID)
    }

    // MARK: Streams

    /// Creates a stream; an identical existing stream is returned as is, a different one is an error
    /// (`JetStreamAPIError.streamNameInUse`).
    @discardableResult
    public func createStream(_ config: StreamConfiguration) async throws -> StreamInfo {
        try await api("STREAM.CREATE.\(try Self.name(config.name))", body: config)
    }

    /// Changes a stream's configuration (subjects, limits…; not its storage or name).
    @discardableResult
    public func updateStream(_ config: StreamConfiguration) async throws -> StreamInfo {
        try await api("STREAM.UPDATE.\(try Self.name(config.name))", body: config)
    }

    public func streamInfo(_ name: String) async throws -> StreamInfo {
        try await api("STREAM.INFO.\(try Self.name(name))")
    }

    /// Deletes a stream and everything in it.
    public func deleteStream(_ name: String) async throws {
        let _: SuccessResponse = try await api("STREAM.DELETE.\(try Self.name(name))")
    }

    /// Removes every message from a stream (or those on `subject`).
    public func purgeStream(_ name: String, subject: String? = nil) async throws {
        struct Purge: Encodable { var filter: String? }
        let _: SuccessResponse = try await api("STREAM.PURGE.\(try Self.name(name))", body: Purge(filter: subject))
    }

    // MARK: Consumers

    /// Creates (or returns the identical existing) consumer on `stream`. Durable consumers use
    /// `CONSUMER.DURABLE.CREATE`, which every 2.x server understands; ephemeral ones `CONSUMER.CREATE`.
    @discardableResult
    public func createConsumer(stream: String, _ config: ConsumerConfiguration) async throws -> ConsumerInfo {
        struct Request: Encodable {
            var streamName: String
            var config: ConsumerConfiguration
            enum CodingKeys: String, CodingKey {
                case config
                case streamName = "stream_name"
            }
        }
        let body = Request(streamName: stream, config: config)
        if let durable = config.durableName {
            return try await api("CONSUMER.DURABLE.CREATE.\(try Self.name(stream)).\(try Self.name(durable))", body: body)
        }
        return try await api("CONSUMER.CREATE.\(try Self.name(stream))", body: body)
    }

    public func consumerInfo(stream: String, name: String) async throws -> ConsumerInfo {
        try await api("CONSUMER.INFO.\(try Self.name(stream)).\(try Self.name(name))")
    }

    public func deleteConsumer(stream: String, name: String) async throws {
        let _: SuccessResponse = try await api("CONSUMER.DELETE.\(try Self.name(stream)).\(try Self.name(name))")
    }

    /// A handle for fetching from an existing pull consumer (no request is made here).
    public func pullConsumer(stream: String, name: String) -> PullConsumer {
        PullConsumer(jetStream: self, stream: stream, name: name)
    }

    // MARK: API plumbing

    struct SuccessResponse: Decodable { var success: Bool }
    struct Empty: Encodable {}

    /// Sends a request to `<apiPrefix>.<path>` and decodes the answer, turning an error document into
    /// `NATSError.jetStream`.
    func api<Response: Decodable>(_ path: String) async throws -> Response {
        try await api(path, body: Empty())
    }

    func api<Response: Decodable>(_ path: String, body: some Encodable) async throws -> Response {
        let data = try JetStreamJSON.encoder.encode(body)
        let payload = body is Empty ? ByteBuffer() : ByteBuffer(bytes: data)
        let reply = try await client.request(payload, to: "\(apiPrefix).\(path)", timeout: timeout)
        return try Self.decode(Response.self, from: reply)
    }

    static func decode<Response: Decodable>(_ type: Response.Type, from reply: NATSMessage) throws -> Response {
        if let status = reply.status, status >= 400, reply.payload.readableBytes == 0 {
            throw NATSError.jetStream(
                JetStreamAPIError(code: status, errorCode: 0, errorDescription: reply.headers?.statusDescription ?? "")
            )
        }
        let data = Data(reply.payload.readableBytesView)
        let decoder = JetStreamJSON.decoder()
        if let envelope = try? decoder.decode(APIErrorEnvelope.self, from: data), let error = envelope.error {
            throw NATSError.jetStream(error)
        }
        do {
            return try decoder.decode(Response.self, from: data)
        } catch {
            throw NATSError.invalidResponse("\(Response.self): \(error) in \(String(decoding: data.prefix(200), as: UTF8.self))")
        }
    }

    /// Stream and consumer names become subject tokens: no dots, wildcards or whitespace.
    static func name(_ name: String) throws -> String {
        guard !name.isEmpty,
            !name.utf8.contains(where: { $0 == 46 || $0 == 42 || $0 == 62 || $0 <= 32 })
        else { throw NATSError.invalidSubject(name) }
        return name
    }
}

extension NATSClient {
    /// JetStream through this client.
    public func jetStream(apiPrefix: String = "$JS.API", timeout: Duration = .seconds(5)) -> JetStream {
        JetStream(client: self, apiPrefix: apiPrefix, timeout: timeout)
    }
}
