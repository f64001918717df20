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
    public var remoteAddress: String
    /// Source IP without port (per-address limits and lane CIDR rules).
    public var remoteHost: String
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
        self.remoteAddress = remoteAddress
        self.remoteHost = remoteHost
        self.login = login
        self.lane = lane
        self.connectedAt = connectedAt
        self.loggedInAt = loggedInAt
    }
}
