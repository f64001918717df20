import NIOCore
import Testing
import YKC

@testable import PileSim

@Suite("FrameSequencer: the pile's own sequence numbers")
struct FrameSequencerTests {
    @Test("per gun: each gun counts from 0 on its own; pile-level and unknown guns use gun 1's counter")
    func perGun() {
        var s = FrameSequencer(scope: .perGun, byteOrder: .little, gunCount: 2)
        #expect(s.next(gun: 0) == YKCSequence(counter: 0))
        #expect(s.next(gun: 0) == YKCSequence(counter: 1))
        #expect(s.next(gun: 1) == YKCSequence(counter: 0))
        #expect(s.next(gun: 7) == YKCSequence(counter: 2))
        #expect(s.next(gun: -1) == YKCSequence(counter: 3))
        #expect(s.next(gun: 1) == YKCSequence(counter: 1))
    }

    @Test("per connection: one counter whatever the gun")
    func perConnection() {
        var s = FrameSequencer(scope: .perConnection, byteOrder: .little, gunCount: 2)
        #expect([s.next(gun: 0), s.next(gun: 1), s.next(gun: 0)] == [0, 1, 2].map { YKCSequence(counter: $0) })
    }

    @Test("byte order: little-endian puts the low byte first, big-endian the high byte")
    func byteOrder() {
        var little = FrameSequencer(scope: .perGun, byteOrder: .little, gunCount: 1)
        var big = FrameSequencer(scope: .perGun, byteOrder: .big, gunCount: 1)
        for _ in 0..<0x0102 {
            _ = little.next(gun: 0)
            _ = big.next(gun: 0)
        }
        #expect(little.next(gun: 0) == YKCSequence(0x02, 0x01))
        #expect(big.next(gun: 0) == YKCSequence(0x01, 0x02))
    }

    @Test("a new connection starts every counter at 0 again")
    func reset() {
        var s = FrameSequencer(scope: .perGun, byteOrder: .little, gunCount: 2)
        _ = s.next(gun: 0)
        _ = s.next(gun: 1)
        _ = s.next(gun: 1)
        s.reset()
        #expect(s.next(gun: 0) == YKCSequence(counter: 0))
        #expect(s.next(gun: 1) == YKCSequence(counter: 0))
    }

    @Test("the counter wraps from 65,535 to 0")
    func wraps() {
        var s = FrameSequencer(scope: .perConnection, byteOrder: .little, gunCount: 1)
        for _ in 0..<65_535 { _ = s.next(gun: 0) }
        #expect(s.next(gun: 0) == YKCSequence(0xFF, 0xFF))
        #expect(s.next(gun: 0) == YKCSequence(counter: 0))
    }
}
