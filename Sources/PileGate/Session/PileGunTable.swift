import NIOCore
import YKC

/// What a session last heard about each gun of its pile: the heartbeat's gun state and time, the
/// real-time data's status. At most `limit` guns (a pile has one to a few; the bound keeps a pile
/// that sends many gun numbers from growing it). Empty — and no allocation — until the first
/// heartbeat or real-time frame.
struct PileGunTable {
    /// 16 bytes a gun: the monotonic heartbeat time has no optional's padding (uptime zero is "none").
    struct Gun: Equatable {
        var gun: GunNumber
        var state: GunState
        var status: GunStatus?
        private var heartbeatAt: NIODeadline

        init(gun: GunNumber, state: GunState, status: GunStatus?, lastHeartbeat: NIODeadline?) {
            self.gun = gun
            self.state = state
            self.status = status
            self.heartbeatAt = lastHeartbeat ?? .uptimeNanoseconds(0)
        }

        /// Monotonic, turned into wall-clock time only when someone asks (`PileLiveState`).
        var lastHeartbeat: NIODeadline? {
            get { heartbeatAt == .uptimeNanoseconds(0) ? nil : heartbeatAt }
            set { heartbeatAt = newValue ?? .uptimeNanoseconds(0) }
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
