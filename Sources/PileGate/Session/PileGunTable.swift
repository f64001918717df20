import NIOCore
import YKC

/// What a session last heard about each gun of its pile: the heartbeat's gun state and time, the
/// real-time data's status. At most `limit` guns (a pile has one to a few; the bound keeps a pile
/// that sends many gun numbers from growing it). Empty — and no allocation — until the first
/// heartbeat or real-time frame.
struct PileGunTable {
    /// 8 bytes a gun (2 guns: a 64-byte heap block with the array's header, not 80): the gun
    /// state and status as their raw bytes, the heartbeat time in tenths of a second of uptime.
    struct Gun: Equatable {
        var gun: GunNumber
        private var stateRaw: UInt8
        private var statusRaw: UInt8
        private var hasStatus: Bool
        /// `NIODeadline.uptimeNanoseconds / 100_000_000`; 0 is "none" (32 bits last 13 years).
        private var heartbeatTenths: UInt32

        init(gun: GunNumber, state: GunState, status: GunStatus?, lastHeartbeat: NIODeadline?) {
            self.gun = gun
            self.stateRaw = state.rawValue
            self.statusRaw = status?.rawValue ?? 0
            self.hasStatus = status != nil
            self.heartbeatTenths = Self.tenths(lastHeartbeat)
        }

        var state: GunState {
            get { GunState(rawValue: stateRaw) }
            set { stateRaw = newValue.rawValue }
        }

        var status: GunStatus? {
            get { hasStatus ? GunStatus(rawValue: statusRaw) : nil }
            set {
                statusRaw = newValue?.rawValue ?? 0
                hasStatus = newValue != nil
            }
        }

        /// Monotonic, to a tenth of a second, turned into wall-clock time only when someone asks
        /// (`PileLiveState`).
        var lastHeartbeat: NIODeadline? {
            get { heartbeatTenths == 0 ? nil : .uptimeNanoseconds(UInt64(heartbeatTenths) * 100_000_000) }
            set { heartbeatTenths = Self.tenths(newValue) }
        }

        private static func tenths(_ time: NIODeadline?) -> UInt32 {
            guard let time else { return 0 }
            return max(1, UInt32(clamping: time.uptimeNanoseconds / 100_000_000))
        }
    }

    static var limit: Int { 64 }
    private(set) var guns: [Gun] = []

    mutating func heartbeat(_ gun: GunNumber, state: GunState, at time: NIODeadline) {
        update(gun) {
            $0.state = state
            $0.lastHeartbeat = time
        }
    }

    mutating func status(_ gun: GunNumber, _ status: GunStatus) {
        update(gun) { $0.status = status }
    }

    private mutating func update(_ gun: GunNumber, _ change: (inout Gun) -> Void) {
        if let i = guns.firstIndex(where: { $0.gun == gun }) {
            change(&guns[i])
        } else if guns.count < Self.limit {
            var g = Gun(gun: gun, state: .normal, status: nil, lastHeartbeat: nil)
            change(&g)
            guns.append(g)
        }
    }
}
