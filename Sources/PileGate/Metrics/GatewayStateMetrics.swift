import YKC

extension Gateway {
    /// Gauges of the gateway's state outside the per-frame counters, for `/metrics`: sessions per
    /// lane (`lane` = "base" for the base lane; lanes come from the operator's rules, so the set is
    /// bounded), registered piles, banned addresses and piles, and the lane rule version — the
    /// figures `pilegate stats` shows from `/v1/stats`.
    func stateGauges() -> [(String, [(String, String)], Double)] {
        var gauges: [(String, [(String, String)], Double)] = []
        for (lane, n) in directory.countByLane() {
            gauges.append(("pilegate_lane_sessions", [("lane", lane.isEmpty ? "base" : lane)], Double(n)))
        }
        gauges.append(("pilegate_registered_piles", [], Double(registry.knownCount)))
        gauges.append(("pilegate_banned_addresses", [], Double(context.admission.bannedAddresses)))
        gauges.append(("pilegate_banned_piles", [], Double(context.admission.bannedPiles)))
        if let version = statsProviders["lanes"]?().doubleValue {
            gauges.append(("pilegate_lane_rules_version", [], version))
        }
        return gauges
    }
}
