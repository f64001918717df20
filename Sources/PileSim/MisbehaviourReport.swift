/// What one misbehaving connection did and how the gateway answered it.
public struct MisbehaviourReport: Sendable {
    public var scenario: Misbehaviour
    /// Units sent: frames, garbage chunks or trickled bytes.
    public var unitsSent = 0
    public var bytesSent = 0
    public var bytesReceived = 0
    /// Whether the gateway answered the login with 0x02 (scenarios that log in first).
    public var loggedIn = false
    /// Whether the gateway closed the connection before the run ended.
    public var closedByGateway = false
    /// Seconds from connect to the gateway's close, or to the end of the run.
    public var seconds: Double = 0

    public init(scenario: Misbehaviour) { self.scenario = scenario }

    /// One line for the CLI.
    public var line: String {
        let end = closedByGateway ? "closed by the gateway after" : "still open after"
        return "misbehave \(scenario.rawValue): \(unitsSent) unit(s), \(bytesSent) bytes sent, \(bytesReceived) bytes received"
            + (scenario.logsInFirst ? ", logged in: \(loggedIn)" : "")
            + ", \(end) \(String(format: "%.1f", seconds)) s"
    }
}
