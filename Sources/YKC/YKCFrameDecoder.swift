import NIOCore

/// A NIO decoder that turns a pile's byte stream into `YKCParseEvent`s.
///
/// Errors are passed on as events rather than thrown, so the next handler can count them and
/// decide whether the connection is hostile; the stream always resynchronises. Wrap it in
/// `ByteToMessageHandler(YKCFrameDecoder(), maximumBufferSize:)` to bound what a peer can make the
/// gateway buffer.
public struct YKCFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = YKCParseEvent

    public private(set) var parser = YKCFrameParser()

    public init() {}

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        while let event = parser.next(&buffer) {
            context.fireChannelRead(Self.wrapInboundOut(event))
        }
        return .needMoreData
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while let event = parser.nextAtEnd(&buffer) {
            context.fireChannelRead(Self.wrapInboundOut(event))
        }
        return .needMoreData
    }
}

/// A NIO encoder for whole frames (low-byte-first CRC). The gateway's hot reply path writes
/// `ByteBuffer`s built with `YKCFrame.write(sequence:code:into:writeBody:)` instead.
public struct YKCFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = YKCFrame
    public init() {}
    public func encode(data: YKCFrame, out: inout ByteBuffer) throws {
        data.write(into: &out)
    }
}
