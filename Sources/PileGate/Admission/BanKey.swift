import NIOCore
import YKC

/// How operators name a flapping ban: `pile:<id>` for a pile id (the API's pile id rule, see
/// `PileID(input:)`) or `addr:<ip>` for a source address (IPv4 or IPv6, as the gateway
/// saw it). The prefix keeps the two kinds apart: a 14-digit string alone could not say which.
public enum BanKey: Equatable, Sendable, CustomStringConvertible {
    case pile(PileID)
    case address(String)

    /// Parses `pile:…` or `addr:…`; nil for anything else.
    public init?(_ text: String) {
        if text.hasPrefix("pile:") {
            guard let id = PileID(input: text.dropFirst(5)) else { return nil }
            self = .pile(id)
        } else if text.hasPrefix("addr:") {
            let host = String(text.dropFirst(5))
            guard !host.isEmpty, host.utf8.count <= 64, (try? SocketAddress(ipAddress: host, port: 0)) != nil else {
                return nil
            }
            self = .address(host)
        } else {
            return nil
        }
    }

    /// `pile` or `address`, as `GET /v1/bans` names the kind.
    public var kind: String {
        switch self {
        case .pile: "pile"
        case .address: "address"
        }
    }

    public var description: String {
        switch self {
        case .pile(let id): "pile:\(id)"
        case .address(let host): "addr:\(host)"
        }
    }
}
