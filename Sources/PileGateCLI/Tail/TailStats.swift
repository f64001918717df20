import Foundation

/// Counts and latency samples (µs) for the current report window and for the summary.
struct TailStats: Sendable {
    struct Window {
        var events = 0
        var latencies: [Int32] = []

        func line(elapsed: Double, seconds: Double) -> String {
            let rate = Double(events) / seconds
            let sorted = latencies.sorted()
            return "t=\(String(format: "%.0f", elapsed))s events/s=\(String(format: "%.0f", rate)) "
                + "latency p50=\(TailStats.ms(TailStats.quantile(sorted, 0.5))) p99=\(TailStats.ms(TailStats.quantile(sorted, 0.99))) "
                + "max=\(TailStats.ms(sorted.last))"
        }
    }

    struct Summary {
        var events = 0
        var totalEvents = 0
        var seconds = 0.0
        var sorted: [Int32] = []
        var unparsed = 0

        func json(service: String, instance: String, failure: String?, subscribed: Bool) -> String {
            func num(_ v: Int32?) -> String { v.map { String(format: "%.3f", Double($0) / 1000) } ?? "null" }
            let mean = sorted.isEmpty ? "null" : String(format: "%.3f", Double(sorted.reduce(0) { $0 + Int64($1) }) / Double(sorted.count) / 1000)
            var s = #"{"tail":"summary","service":\#(TailCommand.jsonString(service)),"instance":\#(TailCommand.jsonString(instance)),"#
            s += #""subscribed":\#(subscribed),"events":\#(events),"totalEvents":\#(totalEvents),"#
            s += #""seconds":\#(String(format: "%.3f", seconds)),"eventsPerSecond":\#(String(format: "%.1f", seconds > 0 ? Double(events) / seconds : 0)),"#
            s += #""latencyMs":{"p50":\#(num(TailStats.quantile(sorted, 0.5))),"p90":\#(num(TailStats.quantile(sorted, 0.9))),"#
            s += #""p99":\#(num(TailStats.quantile(sorted, 0.99))),"p999":\#(num(TailStats.quantile(sorted, 0.999))),"#
            s += #""max":\#(num(sorted.last)),"mean":\#(mean)},"unparsedReceivedAt":\#(unparsed)"#
            if let failure { s += #","error":\#(TailCommand.jsonString(failure))"# }
            return s + "}"
        }
    }

    var window = Window()
    var totalEvents = 0
    var summaryEvents = 0
    var summaryLatencies: [Int32] = []
    var unparsed = 0

    mutating func record(latency: Int64?, countInSummary: Bool, at: Int64) {
        totalEvents += 1
        window.events += 1
        guard let latency else {
            unparsed += 1
            return
        }
        let clamped = Int32(clamping: latency)
        window.latencies.append(clamped)
        if countInSummary {
            summaryEvents += 1
            summaryLatencies.append(clamped)
        }
    }

    mutating func takeWindow() -> Window {
        defer { window = Window() }
        return window
    }

    func summary(from: Int64, to: Int64) -> Summary {
        Summary(
            events: summaryEvents, totalEvents: totalEvents, seconds: Double(max(to - from, 0)) / 1e6,
            sorted: summaryLatencies.sorted(), unparsed: unparsed)
    }

    static func quantile(_ sorted: [Int32], _ q: Double) -> Int32? {
        guard !sorted.isEmpty else { return nil }
        let rank = Int((Double(sorted.count) * q).rounded(.up)) - 1
        return sorted[min(max(rank, 0), sorted.count - 1)]
    }

    static func ms(_ micros: Int32?) -> String {
        guard let micros else { return "-" }
        return String(format: "%.2fms", Double(micros) / 1000)
    }
}
