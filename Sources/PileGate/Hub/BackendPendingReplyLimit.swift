/// Which bound of `BackendPendingReplies` refused a pile request: the pile's own
/// (`hubPendingRepliesPerPile`) or the gateway's (`hubPendingRepliesTotal`). The `limit` label
/// of `pilegate_hub_pending_replies_refused_total`.
enum BackendPendingReplyLimit: String, Sendable, CaseIterable {
    case pile
    case total
}
