import Foundation
import YKC

/// One `/v1/stats` document as fetched, with when it was fetched.
struct StatsSample: Sendable {
    var json: JSONValue
    var fetchedAt: Date

    var counters: JSONValue { json["counters"] ?? .null }
    var uptime: Double? { counters["uptimeSeconds"]?.doubleValue }
}
