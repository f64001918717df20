import Testing

/// The reliability tests of issue 14 that start `pilegate serve` processes, flood sockets or
/// reopen stores: one test at a time, so that on a small machine they do not starve the
/// in-process gateways of the other suites (whose clients wait a few seconds at most).
@Suite("Reliability (issue 14): processes, stores, outbox services, API details", .serialized)
struct ReliabilityTests {}
