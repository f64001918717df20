import Atomics
import NIOCore
import YKC

/// The gateway's counters and gauges, updated on the per-frame path with relaxed atomics (no
/// locks, no allocation) and read by `/v1/stats`, `/metrics` and the stats CLI.
///
/// Label sets are bounded: frame type codes (256), error kinds, close reasons. Never per pile.
public final class GatewayCounters: Sendable {
    public let framesIn: [ManagedAtomic<Int>] = (0..<256).map { _ in ManagedAtomic(0) }
    public let framesOut: [ManagedAtomic<Int>] = (0..<256).map { _ in ManagedAtomic(0) }
    public let bytesIn = ManagedAtomic(0)
    public let bytesOut = ManagedAtomic(0)
    /// Malformed input by `YKCFrameError.kind`.
    public let malformed: [String: ManagedAtomic<Int>] = Dictionary(
        uniqueKeysWithValues: ["garbage", "invalid_length", "invalid_encryption_flag", "crc_mismatch", "truncated"].map {
            ($0, ManagedAtomic(0))
        })
    /// Frames kept raw, by `YKCDecodeError.kind`.
    public let undecoded: [String: ManagedAtomic<Int>] = Dictionary(
        uniqueKeysWithValues: ["unknown_type", "length_mismatch", "count_mismatch", "encrypted"].map { ($0, ManagedAtomic(0)) })
    public let swappedCRC = ManagedAtomic(0)
    public let garbageBytes = ManagedAtomic(0)

    public let accepted = ManagedAtomic(0)
    public let refused: [AdmissionRefusal: ManagedAtomic<Int>] = Dictionary(
        uniqueKeysWithValues: AdmissionRefusal.allCases.map { ($0, ManagedAtomic(0)) })
    public let closed: [OfflineReason: ManagedAtomic<Int>] = Dictionary(
        uniqueKeysWithValues: OfflineReason.allCases.map { ($0, ManagedAtomic(0)) })
    public let loginsAccepted = ManagedAtomic(0)
    public let loginsRejected = ManagedAtomic(0)
    public let loginsDeferred = ManagedAtomic(0)
    public let takeovers = ManagedAtomic(0)
    public let refusedBeforeLogin = ManagedAtomic(0)
    public let refusedForeignPile = ManagedAtomic(0)
    public let throttleEpisodes = ManagedAtomic(0)
    public let slowReaderEpisodes = ManagedAtomic(0)
    /// Commands refused because the pile already had `maxCommandsPerPile` waiting.
    public let commandsRefused = ManagedAtomic(0)
    public let flapBans = ManagedAtomic(0)
    public let heartbeats = ManagedAtomic(0)
    /// Frames with the encryption flag 0x01 received, and encrypted frames sent.
    public let encryptedIn = ManagedAtomic(0)
    public let encryptedOut = ManagedAtomic(0)
    /// Encrypted frames refused: no key for the pile (or no key opens a login) / the key does not decrypt.
    public let refusedEncryptedNoKey = ManagedAtomic(0)
    public let refusedUndecryptable = ManagedAtomic(0)
    /// TLS pile connections: completed handshakes, failed ones by reason, and logins refused
    /// because the pile id is not the one the client certificate names.
    public let tlsHandshakes = ManagedAtomic(0)
    public let tlsHandshakeFailures: [PileTLSHandshakeFailure: ManagedAtomic<Int>] = Dictionary(
        uniqueKeysWithValues: PileTLSHandshakeFailure.allCases.map { ($0, ManagedAtomic(0)) })
    public let refusedCertificateMismatch = ManagedAtomic(0)
    /// Logins of pile ids new to a registry that already holds `registryMaxPiles` ids.
    public let refusedRegistryFull = ManagedAtomic(0)

    /// Open connections (logged in or not).
    public let connections = ManagedAtomic(0)
    /// Connections that have not logged in yet.
    public let pendingLogins = ManagedAtomic(0)
    /// Logged-in sessions.
    public let online = ManagedAtomic(0)
    public let peakOnline = ManagedAtomic(0)

    public let startedAt = NIODeadline.now()

    public init() {}

    @inlinable
    public func frameIn(code: UInt8, bytes: Int) {
        framesIn[Int(code)].wrappingIncrement(ordering: .relaxed)
        bytesIn.wrappingIncrement(by: bytes, ordering: .relaxed)
    }

    @inlinable
    public func frameOut(code: UInt8, bytes: Int) {
        framesOut[Int(code)].wrappingIncrement(ordering: .relaxed)
        bytesOut.wrappingIncrement(by: bytes, ordering: .relaxed)
    }

    public func sessionOnline() {
        let now = online.wrappingIncrementThenLoad(ordering: .relaxed)
        var peak = peakOnline.load(ordering: .relaxed)
        while now > peak {
            let (exchanged, original) = peakOnline.compareExchange(expected: peak, desired: now, ordering: .relaxed)
            if exchanged { break }
            peak = original
        }
    }

    /// A JSON-friendly snapshot.
    public func snapshot() -> Snapshot {
        var inByType: [String: Int] = [:]
        var outByType: [String: Int] = [:]
        for code in 0..<256 {
            let i = framesIn[code].load(ordering: .relaxed)
            if i > 0 { inByType[Self.typeLabel(UInt8(code))] = i }
            let o = framesOut[code].load(ordering: .relaxed)
            if o > 0 { outByType[Self.typeLabel(UInt8(code))] = o }
        }
        return Snapshot(
            uptimeSeconds: Double((NIODeadline.now() - startedAt).nanoseconds) / 1e9,
            connections: connections.load(ordering: .relaxed),
            pendingLogins: pendingLogins.load(ordering: .relaxed),
            online: online.load(ordering: .relaxed),
            peakOnline: peakOnline.load(ordering: .relaxed),
            accepted: accepted.load(ordering: .relaxed),
            refused: Dictionary(uniqueKeysWithValues: refused.map { ($0.key.rawValue, $0.value.load(ordering: .relaxed)) }),
            closed: Dictionary(uniqueKeysWithValues: closed.map { ($0.key.rawValue, $0.value.load(ordering: .relaxed)) }),
            loginsAccepted: loginsAccepted.load(ordering: .relaxed),
            loginsRejected: loginsRejected.load(ordering: .relaxed),
            loginsDeferred: loginsDeferred.load(ordering: .relaxed),
            takeovers: takeovers.load(ordering: .relaxed),
            framesIn: inByType,
            framesOut: outByType,
            bytesIn: bytesIn.load(ordering: .relaxed),
            bytesOut: bytesOut.load(ordering: .relaxed),
            heartbeats: heartbeats.load(ordering: .relaxed),
            malformed: Dictionary(uniqueKeysWithValues: malformed.map { ($0.key, $0.value.load(ordering: .relaxed)) }),
            undecoded: Dictionary(uniqueKeysWithValues: undecoded.map { ($0.key, $0.value.load(ordering: .relaxed)) }),
            swappedCRC: swappedCRC.load(ordering: .relaxed),
            garbageBytes: garbageBytes.load(ordering: .relaxed),
            refusedBeforeLogin: refusedBeforeLogin.load(ordering: .relaxed),
            refusedForeignPile: refusedForeignPile.load(ordering: .relaxed),
            throttleEpisodes: throttleEpisodes.load(ordering: .relaxed),
            slowReaderEpisodes: slowReaderEpisodes.load(ordering: .relaxed),
            flapBans: flapBans.load(ordering: .relaxed),
            encryptedFramesIn: encryptedIn.load(ordering: .relaxed),
            encryptedFramesOut: encryptedOut.load(ordering: .relaxed),
            refusedEncryptedNoKey: refusedEncryptedNoKey.load(ordering: .relaxed),
            refusedUndecryptable: refusedUndecryptable.load(ordering: .relaxed),
            tlsHandshakes: tlsHandshakes.load(ordering: .relaxed),
            tlsHandshakeFailures: Dictionary(
                uniqueKeysWithValues: tlsHandshakeFailures.map { ($0.key.rawValue, $0.value.load(ordering: .relaxed)) }),
            refusedCertificateMismatch: refusedCertificateMismatch.load(ordering: .relaxed))
    }

    /// `0x03_heartbeat`-style label: code and name, bounded to 256 values.
    public static func typeLabel(_ code: UInt8) -> String {
        labels[Int(code)]
    }

    private static let labels: [String] = (0..<256).map { code in
        let hex = String(code, radix: 16, uppercase: true)
        let prefix = "0x" + (hex.count == 1 ? "0" + hex : hex)
        if let info = YKCMessageInfo.of(code: UInt8(code)) { return prefix + "_" + info.name }
        return prefix
    }

    public struct Snapshot: Codable, Sendable {
        public var uptimeSeconds: Double
        public var connections: Int
        public var pendingLogins: Int
        public var online: Int
        public var peakOnline: Int
        public var accepted: Int
        public var refused: [String: Int]
        public var closed: [String: Int]
        public var loginsAccepted: Int
        public var loginsRejected: Int
        public var loginsDeferred: Int
        public var takeovers: Int
        public var framesIn: [String: Int]
        public var framesOut: [String: Int]
        public var bytesIn: Int
        public var bytesOut: Int
        public var heartbeats: Int
        public var malformed: [String: Int]
        public var undecoded: [String: Int]
        public var swappedCRC: Int
        public var garbageBytes: Int
        public var refusedBeforeLogin: Int
        public var refusedForeignPile: Int
        public var throttleEpisodes: Int
        public var slowReaderEpisodes: Int
        public var flapBans: Int
        public var encryptedFramesIn: Int
        public var encryptedFramesOut: Int
        public var refusedEncryptedNoKey: Int
        public var refusedUndecryptable: Int
        public var tlsHandshakes: Int
        public var tlsHandshakeFailures: [String: Int]
        public var refusedCertificateMismatch: Int
    }
}
