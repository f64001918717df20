import Foundation
import NIOConcurrencyHelpers
import NIOCore
import YKC

/// What a logged-in session is: identity, login attributes, lane. Immutable once logged in, so
/// it can be shared freely across loops and with the backend hub.
public struct PileSessionInfo: Sendable, Hashable {
    /// Unique per connection within this process.
    public var connectionId: UInt64
    public var pileId: PileID
    /// "host:port" as the pile connected from. Kept as the port alone when it is `remoteHost`
    /// and a port (always, for a pile connection): an IPv4 "host:port" is often more than the
    /// 15 bytes a `String` holds inline, and then a 64-byte heap block per pile.
    public var remoteAddress: String {
        get {
            switch address {
            case .port(let port): "\(remoteHost):\(port)"
            case .text(let text): text
            }
        }
        set { address = Self.address(newValue, host: remoteHost) }
    }
    private var address: Address
    /// Source IP without port (per-address limits and lane CIDR rules). Changing it leaves
    /// `remoteAddress` as it was.
    public var remoteHost: String {
        didSet {
            if case .port(let port) = address { address = Self.address("\(oldValue):\(port)", host: remoteHost) }
        }
    }
    public var login: Login
    /// The lane decided at login; "" is the base lane.
    public var lane: String
    public var connectedAt: Date
    public var loggedInAt: Date

    public init(
        connectionId: UInt64, pileId: PileID, remoteAddress: String, remoteHost: String, login: Login, lane: String,
        connectedAt: Date, loggedInAt: Date
    ) {
        self.connectionId = connectionId
        self.pileId = pileId
        self.remoteHost = remoteHost
        self.address = Self.address(remoteAddress, host: remoteHost)
        self.login = login
        self.lane = lane
        self.connectedAt = connectedAt
        self.loggedInAt = loggedInAt
    }

    private enum Address: Sendable, Hashable {
        /// `remoteHost:port`.
        case port(UInt16)
        case text(String)
    }

    private static func address(_ text: String, host: String) -> Address {
        let hostBytes = host.utf8.count
        let bytes = text.utf8
        guard bytes.count > hostBytes + 1, text.utf8.starts(with: host.utf8),
            bytes[bytes.index(bytes.startIndex, offsetBy: hostBytes)] == UInt8(ascii: ":"),
            let port = UInt16(Substring(bytes.dropFirst(hostBytes + 1))), "\(host):\(port)" == text
        else { return .text(text) }
        return .port(port)
    }
}
