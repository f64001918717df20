/// Where the outcome of an event handed to the hub from outside goes (`BackendHub.handOver`): an
/// event another node routed to one of this node's instances (`ClusterEventRelay`), or one a
/// durable consumer pulled from a stream. Such an event uses the instance's credit and counts in
/// its health like any other, but its lane traffic, outbox mark and re-routing belong to whoever
/// handed it over: the hub reports, once per event, that it was acked or that it was given up here,
/// and does nothing else with it.
///
/// One receipt serves many events (it is told the event id), so handing an event over allocates
/// no closure.
struct BackendEventReceipt: Sendable {
    enum Outcome: Sendable, Equatable {
        /// The instance acked it (a `reply` acks too).
        case acked
        /// Given up on this node; the one who handed it over decides what happens next.
        case failed(Failure)
    }

    enum Failure: String, Sendable, Equatable {
        /// The instance is gone (its socket closed), or was never there.
        case instanceGone = "instance_gone"
        /// The instance's waiting queue was full (`hubQueueLimit`).
        case queueFull = "queue_full"
        /// The instance was ejected with the event still waiting for credit.
        case ejected
        /// Not acked within `hubAckTimeout` (counted as a failure of the instance here too).
        case ackTimeout = "ack_timeout"
    }

    /// Called once per event, from whichever thread decided (an event loop, the sweeper).
    let report: @Sendable (_ eventId: String, _ instance: BackendInstance, _ outcome: Outcome) -> Void
}
