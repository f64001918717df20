/// How a `tail` run went: whether the gateway confirmed the subscription, and the first failure.
struct TailOutcome: Sendable {
    var subscribed = false
    var failure: String?
}
