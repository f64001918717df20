import Foundation
import NIOConcurrencyHelpers
import NIOCore
import YKC

/// What a logged-in session is: identity, login attributes, lane. Immutable once logged in, so
/// it can be shared freely across loops and with the backend hub.
///
/// Every logged-in pile has one (in its `PileSessionHandle`), so it is packed: the pile id is the
/// login's, and the stored properties are declared in the order that leaves no padding between
/// them (136 bytes: a 168-byte handle, a 176-byte heap block, where this order and a separate
/// pile id took 192).
public struct PileSessionInfo: Sendable, Hashable {
    /// Unique per connection within this process.
    public var connectionId: UInt64
    /// Source IP without port (per-address limits and lane CIDR rules). Changing it leaves
    /// `remoteAddress` as it was.
    public var remoteHost: String {
        didSet {
            if addressText == nil { addressText = "\(oldValue):\(port)" }
            (port, addressText) = Self.address(remoteAddress, host: remoteHost)
        }
    }
    /// The lane decided at login; "" is the base lane.
    public var lane: String
    public var connectedAt: Date
    public var loggedInAt: Date
    public var login: Login
    /// The port of `remoteAddress` when that is `remoteHost:port` (always, for a pile
    /// connection); `addressText` is nil then.
    private var port: UInt16
    /// `remoteAddress` as given when it is not `remoteHost:port`. An IPv4 "host:port" is often
    /// more than the 15 bytes a `String` holds inline, and then a 64-byte heap block per pile.
    private var addressText: String?

    /// The login's pile id.
    public var pileId: PileID {
        get { login.pileId }
        set { login.pileId = newValue }
    }

    /// "host:port" as the pile connected from.
    public var remoteAddress: String {
        get { addressText ?? "\(remoteHost):\(port)" }
        set { (port, addressText) = Self.address(newValue, host: remoteHost) }
    }

    /// `pileId` is the session's pile id; it is also the login's (`login.pileId` is set to it).
    public init(
        connectionId: UInt64, pileId: PileID, remoteAddress: String, remoteHost: String, login: Login, lane: String,
        connectedAt: Date, loggedInAt: Date
    ) {
        self.connectionId = connectionId
        self.remoteHost = remoteHost
        self.lane = lane
        self.connectedAt = connectedAt
        self.loggedInAt = loggedInAt
        self.login = login
        self.login.pileId = pileId
        (self.port, self.addressText) = Self.address(remoteAddress, host: remoteHost)
    }

    /// The port alone when `text` is `host:port` with a canonical port, else the text verbatim.
    private static func address(_ text: String, host: String) -> (UInt16, String?) {
        let hostBytes = host.utf8.count
        let bytes = text.utf8
        guard bytes.count > hostBytes + 1, text.utf8.starts(with: host.utf8),
            bytes[bytes.index(bytes.startIndex, offsetBy: hostBytes)] == UInt8(ascii: ":"),
            let port = UInt16(Substring(bytes.dropFirst(hostBytes + 1))), "\(host):\(port)" == text
        else { return (0, text) }
        return (port, nil)
    }
}
