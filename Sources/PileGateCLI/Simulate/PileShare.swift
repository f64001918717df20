/// One worker process's share of a `pilegate simulate --workers N` run: `count` consecutive piles
/// starting at run index `offset` (pile id `--first-id` + offset). Shares differ by at most one
/// pile, the first ones taking the remainder, and together cover the run exactly once.
struct PileShare: Sendable, Hashable {
    var offset: Int
    var count: Int

    /// Worker `index`'s (0..<workers) share of `piles` piles.
    static func of(piles: Int, workers: Int, index: Int) -> PileShare {
        let workers = max(1, workers)
        let base = piles / workers
        let extra = piles % workers
        return PileShare(offset: index * base + min(index, extra), count: base + (index < extra ? 1 : 0))
    }

    /// The largest share of a split (the first worker's).
    static func largest(piles: Int, workers: Int) -> Int { of(piles: piles, workers: workers, index: 0).count }

    /// This share's part of a run-wide rate (connections or bills per unit of time).
    func part(of runRate: Double, piles: Int) -> Double {
        piles > 0 ? runRate * Double(count) / Double(piles) : 0
    }
}
