import Foundation

/// A flapping ban by pile id that this node decided or an operator lifted here: what cluster
/// mode shares with the other nodes (`ClusterPileBans`), so a flapping pile that the load
/// balancer moves to another node is still refused there.
public enum PileBanChange: Sendable, Equatable {
    case banned(pile: String, until: Date, since: Date, connects: Int)
    case lifted(pile: String)
}
