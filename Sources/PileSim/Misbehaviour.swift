import NIOCore
import YKC

/// The ways a hostile or broken pile misbehaves, for `pilegate simulate --misbehave` and the
/// gateway's protection tests (docs/SECURITY.md, "Input bounds", names the setting that bounds each).
///
/// Kept apart from PileCore so a well-behaved simulated pile never carries any of this.
public enum Misbehaviour: String, CaseIterable, Sendable {
    /// Random bytes instead of frames.
    case garbage
    /// Logs in, then sends heartbeats far above the per-connection frame rate.
    case flood
    /// Frames announcing the largest length (255) whose body and CRC never check out.
    case oversize
    /// Well-formed login frames with a wrong CRC.
    case badCRC = "bad-crc"
    /// Heartbeats before any login.
    case beforeLogin = "before-login"
    /// A login frame trickled a byte at a time, its last byte never sent.
    case slowloris
    /// Logs in, stops reading, and keeps sending heartbeats so the gateway has replies to write.
    case neverRead = "never-read"

    /// Frames (or, for slowloris, bytes) sent per second when the caller gives no rate.
    public var defaultRate: Double {
        switch self {
        case .garbage, .oversize, .badCRC, .beforeLogin: 20
        case .flood: 2_000
        case .slowloris: 1
        case .neverRead: 40
        }
    }

    /// Whether the scenario logs in first (and waits for 0x02).
    var logsInFirst: Bool { self == .flood || self == .neverRead }

    /// The bytes of one unit of misbehaviour (one frame, a chunk of garbage, or one trickled byte);
    /// `index` counts units sent so far.
    func unit(pileID: PileID, index: Int, generator: inout some RandomNumberGenerator) -> [UInt8] {
        let sequence = YKCSequence(counter: UInt16(truncatingIfNeeded: index &+ 1))
        switch self {
        case .garbage:
            return (0..<64).map { _ in UInt8.random(in: 0...255, using: &generator) }
        case .oversize:
            // 0x68, length 255, a plain header (encryption flag 0), then bytes without a start byte:
            // a full-size candidate the parser reads to the end only to find its CRC wrong.
            var bytes: [UInt8] = [0x68, 0xFF, 0x00, 0x01, 0x00, 0x03]
            bytes += (0..<253).map { _ in UInt8.random(in: 0...0x67, using: &generator) }
            return Self.withWrongCRC(bytes)
        case .badCRC:
            return Self.withWrongCRC(Self.login(pileID, sequence: sequence).bytes)
        case .flood, .beforeLogin, .neverRead:
            return Heartbeat(pileId: pileID, gun: 1, gunState: .normal).frame(sequence: sequence).bytes
        case .slowloris:
            let login = Self.login(pileID, sequence: YKCSequence(counter: 0)).bytes
            // Never the last byte: the frame stays one byte short for ever.
            return index < login.count - 1 ? [login[index]] : []
        }
    }

    static func login(_ pileID: PileID, sequence: YKCSequence) -> YKCFrame {
        Login(
            pileId: pileID, pileType: .dc, gunCount: 1, protocolVersion: 16, firmwareVersion: "MISB",
            networkType: .lan, sim: "00000000000000000000", carrier: .other
        ).frame(sequence: sequence)
    }

    /// `frame` with a CRC that matches in neither byte order.
    static func withWrongCRC(_ frame: [UInt8]) -> [UInt8] {
        var bytes = frame
        let n = bytes.count
        for delta in UInt8(1)...UInt8(255) {
            bytes[n - 2] = frame[n - 2] &+ delta
            var buffer = ByteBuffer(bytes: bytes)
            var parser = YKCFrameParser()
            if case .frame = parser.next(&buffer) { continue }
            return bytes
        }
        return bytes
    }
}
