import Foundation

/// Tuning of the backend hub. Defaults suit a production platform; tests shorten them.
public struct HubConfiguration: Sendable, Equatable {
    /// A new instance's share of piles rises linearly over this window.
    public var warmupWindow: TimeInterval = 30
    /// An event not acked within this time counts as a failure of its instance.
    public var ackTimeout: TimeInterval = 10
    /// An ack slower than this counts as a failure too, when a peer that could take the work
    /// acks within it (outlier detection: a uniformly slow service is not ejected piecemeal).
    public var latencyBound: TimeInterval = 2
    /// Consecutive failures that eject an instance.
    public var failuresToEject = 3
    /// First ejection period; it doubles with every further ejection, up to `maxEjection`.
    public var baseEjection: TimeInterval = 5
    public var maxEjection: TimeInterval = 300
    /// Events waiting for credit per instance; beyond it they are dropped and counted.
    public var queueLimit = 10_000
    /// The same for an instance of another node of the cluster, on this node. Its own node queues
    /// the events again (up to `queueLimit`), so a long queue here only makes them later: with six
    /// nodes at 10,000 each, events waited 13 s before the first was dropped (docs/BENCHMARKS.md,
    /// "Cluster load").
    public var remoteQueueLimit = 1_000
    /// How long a pile request (billing model, start, login) waits for a backend reply.
    public var replyTimeout: TimeInterval = 5
    /// Pile requests (billing model, start, backend login) of one pile that may wait for a
    /// backend's reply at once; more are answered as if their reply had timed out (the fallback).
    public var pendingRepliesPerPile = 32
    /// Pile requests of all piles that may wait for a backend's reply at once.
    public var pendingRepliesTotal = 100_000
    /// How long a command waits for the pile's reply by default.
    public var commandTimeout: TimeInterval = 15
    /// Default `maxInFlight` when a subscription does not say.
    public var defaultMaxInFlight = 256
    /// Commands one backend socket may have running at once; more get `too_many_commands`.
    public var maxCommandsPerSocket = 1_024
    /// Commands that may wait for one offline pile (`deliverWithin`); more get `too_many_commands`.
    public var queuedCommandsPerPile = 100
    /// Commands that may wait for offline piles on this gateway, all piles together.
    public var queuedCommandsTotal = 100_000
    /// The largest message a backend may send (all its frames together); a larger one gets an
    /// `error` (`message_too_large`) and is dropped, the socket stays open.
    public var maxMessageBytes = 1 << 20
    /// The largest single WebSocket frame the API reads: the frame decoder must hold a whole frame
    /// before it can be looked at, so a message over `maxMessageBytes` can be dropped with an
    /// error only when each of its frames is within this bound; one larger frame closes the
    /// socket (1009, message too big). Four times the message limit.
    public var maxFrameBytes: Int { maxMessageBytes.multipliedReportingOverflow(by: 4).overflow ? Int.max : maxMessageBytes * 4 }
    public init() {}
}
