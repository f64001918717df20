import NIOConcurrencyHelpers
import NIOCore

/// Numbers pile connections in the order the listening socket accepted them.
///
/// A takeover keeps the pile's newest connection (`SessionDirectory.register`), so "newest" must
/// follow the real order of connections. Accepts happen in order on the listener's one event
/// loop, but each accepted channel is set up on its own loop, and two loops may run that set-up in
/// either order: numbering there (in `channelActive`) once let a pile's reconnection get a lower
/// number than the connection it replaced, and the new login was then refused as stale.
/// `AcceptNumbering` numbers each channel on the listener's loop as it is accepted, and the
/// session takes the number when its handler is added. An entry lives only between the two.
final class AcceptOrder: Sendable {
    private let next: @Sendable () -> UInt64
    private let numbers = NIOLockedValueBox<[ObjectIdentifier: UInt64]>([:])

    init(next: @escaping @Sendable () -> UInt64) {
        self.next = next
    }

    /// Called on the listener's loop for each accepted channel, in accept order.
    func accepted(_ channel: any Channel) {
        let n = next()
        numbers.withLockedValue { $0[ObjectIdentifier(channel)] = n }
    }

    /// The channel's accept number, removed from the table; a channel that did not come through
    /// a listener (a test pipeline) gets the next number now.
    func take(_ channel: any Channel) -> UInt64 {
        numbers.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(channel)) } ?? next()
    }

    /// Channels numbered but not yet taken (set-up in flight, or set-up failed before the
    /// session handler was added).
    var pending: Int { numbers.withLockedValue { $0.count } }
}

/// The listener-side half of `AcceptOrder`: sees every accepted channel, in order, before the
/// bootstrap hands it to its own loop.
final class AcceptNumbering: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let order: AcceptOrder

    init(order: AcceptOrder) {
        self.order = order
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        order.accepted(unwrapInboundIn(data))
        context.fireChannelRead(data)
    }
}
