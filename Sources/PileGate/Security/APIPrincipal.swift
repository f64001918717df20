/// Who made an API request once it is authenticated: a bearer token, or a client certificate
/// mapped to scopes (`apiClientCertificateScopes`). Carried in `APIRequestContext.principal`
/// so the WebSocket subscription and its commands are checked against the same limits.
public struct APIPrincipal: Sendable, Equatable {
    /// The token's name, or `cert:CN=…` for a client certificate.
    public var name: String
    public var scopes: Set<APIScope>
    public var lanes: Set<String>?
    public var services: Set<String>?
    public var commands: Set<String>?

    public init(name: String, scopes: Set<APIScope>, lanes: Set<String>? = nil, services: Set<String>? = nil, commands: Set<String>? = nil) {
        self.name = name
        self.scopes = scopes
        self.lanes = lanes
        self.services = services
        self.commands = commands
    }

    init(token: APIToken) {
        self.init(
            name: token.name, scopes: Set(token.scopes), lanes: token.lanes.map(Set.init), services: token.services.map(Set.init),
            commands: token.commands.map(Set.init))
    }

    public func has(_ scope: APIScope) -> Bool { scopes.contains(scope) }
    public func allows(lane: String) -> Bool { lanes?.contains(lane) ?? true }
    public func allows(service: String) -> Bool { services?.contains(service) ?? true }
    public func allows(command: String) -> Bool { commands?.contains(command) ?? true }

    /// Why a command is refused, or nil when `commands:send` and the kind and lane limits allow it.
    /// `lane` is the lane the command is sent for (the subscription's, or `?lane=` over HTTP); a
    /// lane-limited token must name one of its lanes, so it can reach only piles in those lanes.
    public func refusal(command: String, lane: String) -> String? {
        if !has(.commandsSend) { return "token '\(name)' lacks scope commands:send" }
        if !allows(command: command) { return "token '\(name)' may not send '\(command.prefix(64))'" }
        if !allows(lane: lane) { return "token '\(name)' may not send to lane '\(lane.prefix(64))'" }
        return nil
    }
}
