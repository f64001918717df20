import Logging

/// Builds a gateway with every component attached, as `pilegate serve` runs it.
public enum GatewayAssembly {
    public static func make(config: GatewayConfiguration, logger: Logger) throws -> Gateway {
        try Gateway(config: config, logger: logger)
    }
}
