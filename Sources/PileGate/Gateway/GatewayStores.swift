import Logging

/// What the gateway's pieces share, opened before any of them: the registry's database with the
/// stores in it (piles, frame keys, per-pile limits, API tokens and their authenticator) and the
/// live session directory.
///
/// Opened first so that everything needing them (the backend hub, the lane rule book, the
/// cluster's pile features) is built complete, with them at creation, before the gateway that
/// takes those pieces; nothing has to reach back into the gateway for them later.
public struct GatewayStores: Sendable {
    public let registry: PileRegistry
    /// Per-pile 3DES keys for encrypted frames.
    public let keys: PileKeyStore
    /// Per-pile overrides of the per-connection limits.
    public let limits: PileLimitStore
    /// API credentials (tokens in the registry's database, client-certificate scopes).
    public let auth: APIAuthenticator
    /// The live sessions of this node, by pile.
    public let directory: SessionDirectory

    /// Opens the registry in `dataDirectory` (marking every pile offline: none is connected
    /// yet) and the stores in its database. Throws naming the file when one cannot open.
    public static func open(config: GatewayConfiguration, logger: Logger) throws -> GatewayStores {
        let registry = try PileRegistry(directory: config.dataDirectory, fresh: config.freshStore, logger: logger)
        try registry.markAllOffline(reason: "gateway_restart")
        let keys = try PileKeyStore(database: registry.database, logger: logger)
        let limits = try PileLimitStore(database: registry.database, logger: logger)
        let auth = APIAuthenticator(
            tokens: try TokenStore(database: registry.database, logger: logger), certificateScopes: config.apiClientCertificateScopes,
            alwaysEnforced: APIAuthenticator.mustAlwaysEnforce(config), logger: logger)
        return GatewayStores(registry: registry, keys: keys, limits: limits, auth: auth, directory: SessionDirectory())
    }
}
