/// Why a pile connection ended; carried in `pile_offline` events, the registry and metrics.
public enum OfflineReason: String, Sendable, CaseIterable, Codable {
    /// Nothing received within the liveness timeout.
    case livenessTimeout = "liveness_timeout"
    /// The pile closed the connection (or it reset).
    case closedByPile = "closed_by_pile"
    /// Kicked by an operator through the admin API.
    case kicked
    /// A newer connection logged in with the same pile id.
    case replaced = "replaced_by_new_login"
    /// Exceeded its frame or byte rate repeatedly.
    case rateLimited = "rate_limit"
    /// The gateway is shutting down.
    case shutdown
    /// No login within the login timeout.
    case loginTimeout = "login_timeout"
    /// The login was refused (policy).
    case loginRejected = "login_rejected"
    /// Too many malformed frames.
    case malformedInput = "malformed_input"
    /// Too many frames before login or with another pile's id.
    case refusedFrames = "refused_frames"
    /// Did not read what we sent it.
    case slowReader = "slow_reader"
    /// The login's pile id is not the one the connection's client certificate names (TLS).
    case certificateMismatch = "certificate_mismatch"
    /// Refused at admission (limits, flapping ban).
    case admissionRefused = "admission_refused"
    /// A socket error.
    case error
    /// Cluster mode: the node holding the session died (or restarted) and the cluster's cleaner
    /// declared its piles offline (`ClusterPileDirectory`).
    case nodeLost = "node_lost"
}

/// Why a new connection was refused before it could log in.
public enum AdmissionRefusal: String, Sendable, CaseIterable {
    case maxConnections = "max_connections"
    /// Only `fileDescriptorReserve` file descriptors remained under the process's file limit:
    /// they are kept for the API, backends and SQLite.
    case fileLimit = "file_limit"
    case maxConnectionsPerAddress = "max_connections_per_address"
    case maxPendingLogins = "max_pending_logins"
    case addressBanned = "address_banned"
    case pileBanned = "pile_banned"
}
