import YKC

/// One lane decision in progress: the login and source address, plus the values that are worth
/// computing at most once per login however many rules look at them (the percent bucket, the
/// parsed address), and not at all when no rule does.
struct LaneQuery {
    let login: Login
    let remoteHost: String
    private var bucket: UInt32?
    private var parsed: LaneAddressRange.Address??

    init(login: Login, remoteHost: String) {
        self.login = login
        self.remoteHost = remoteHost
    }

    var percentBucket: UInt32 {
        mutating get {
            if let bucket { return bucket }
            let b = CompiledLaneRule.percentBucket(login.pileId)
            bucket = b
            return b
        }
    }

    /// Nil when the host is not an IP address (e.g. "?" before the peer is known): no CIDR holds.
    var address: LaneAddressRange.Address? {
        mutating get {
            if let parsed { return parsed }
            let a = LaneAddressRange.parseAddress(remoteHost)
            parsed = .some(a)
            return a
        }
    }
}
