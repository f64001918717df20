import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import PileGate

@Suite("Accept order: connection numbers follow the listener, not the loops that set channels up")
struct AcceptOrderTests {
    @Test("channels set up in the reverse order still keep the numbers they were accepted with")
    func numbersFollowAccepts() {
        let lock = NIOLockedCounter()
        let order = AcceptOrder(next: { lock.next() })
        let first = EmbeddedChannel()
        let second = EmbeddedChannel()
        order.accepted(first)
        order.accepted(second)
        #expect(order.pending == 2)
        // The second channel's loop runs its set-up first.
        let b = order.take(second)
        let a = order.take(first)
        #expect(a < b)
        #expect(order.pending == 0)
    }

    @Test("a channel that never came through a listener is numbered after everything accepted so far")
    func unlistedChannelGetsNextNumber() {
        let lock = NIOLockedCounter()
        let order = AcceptOrder(next: { lock.next() })
        let accepted = EmbeddedChannel()
        order.accepted(accepted)
        let direct = order.take(EmbeddedChannel())
        #expect(direct > order.take(accepted))
    }

    @Test("the listener handler numbers each accepted channel and passes it on")
    func handlerNumbersAndForwards() throws {
        let lock = NIOLockedCounter()
        let order = AcceptOrder(next: { lock.next() })
        let server = EmbeddedChannel(handler: AcceptNumbering(order: order))
        let child = EmbeddedChannel()
        try server.writeInbound(child as any Channel)
        #expect(order.pending == 1)
        let forwarded = try server.readInbound(as: (any Channel).self)
        #expect(forwarded.map { $0 === child } == true)
        #expect(order.take(child) == 1)
    }
}

/// A counter safe to call from the `@Sendable` numbering closure.
private final class NIOLockedCounter: Sendable {
    private let value = NIOLockedValueBox<UInt64>(0)
    func next() -> UInt64 { value.withLockedValue { $0 += 1; return $0 } }
}
