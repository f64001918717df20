import ArgumentParser
import Foundation
import YKC

/// `pilegate outbox [show]`: the durable outbox's depth per service and event type (GET /v1/outbox);
/// `pilegate outbox forget SERVICE`: stop keeping events for a service (DELETE /v1/outbox/services/SERVICE).
struct OutboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox",
        abstract: "Show the durable outbox, or forget a service it keeps events for.",
        subcommands: [Show.self, Forget.self], defaultSubcommand: Show.self)

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the durable outbox: events stored, pending per service and type, oldest pending age.")

        @OptionGroup var options: APIOptions
        @Flag(name: .long, help: "Print the API's JSON.") var json = false

        func run() async throws {
            let client = try options.client()
            try await AdminCommand.run {
                let answer: AdminClient.Answer
                do {
                    answer = try await client.get("/v1/outbox")
                } catch AdminClient.Failure.http(_, _, 404, let code, _) where code == nil || code == "not_found" {
                    AdminCommand.printError("this gateway has no outbox (GET /v1/outbox answers 404)")
                    throw ExitCode(1)
                }
                if json { return AdminCommand.printJSON(answer) }
                AdminCommand.write(OutboxCommand.render(answer.json ?? .null))
            }
        }
    }

    struct Forget: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forget a durable service: the outbox stops keeping its undelivered events.",
            discussion: """
                For a service that is gone for good (renamed, retired, a one-time test subscriber): its pending \
                events are no longer kept for it and are compacted once the other services have them. Refused \
                while an instance of the service is connected.
                """)

        @OptionGroup var options: APIOptions
        @Argument(help: "The service name.") var service: String
        @Flag(name: .long, help: "Print the API's JSON.") var json = false

        func validate() throws {
            guard !service.isEmpty, service.utf8.count <= 64,
                service.unicodeScalars.allSatisfy({ $0.properties.isASCIIHexDigit || CharacterSet.alphanumerics.contains($0) || "-_.".unicodeScalars.contains($0) })
            else { throw ValidationError("invalid service name '\(service)': letters, digits, '-', '_', '.'") }
        }

        func run() async throws {
            let client = try options.client()
            try await AdminCommand.run {
                let answer = try await client.send("DELETE", "/v1/outbox/services/\(service)")
                if json { return AdminCommand.printJSON(answer) }
                AdminCommand.write("forgot outbox service \(answer.json?["forgotten"]?.stringValue ?? service)\n")
            }
        }
    }

    static func render(_ doc: JSONValue) -> String {
        let (depth, oldest) = OutboxFigures.of(doc)
        var out = "depth \(depth.map(String.init) ?? "?")   oldest pending \(oldest.map(Format.duration) ?? "-")"
        if let stored = doc["events"]?.intValue { out += "   stored \(stored)" }
        if let max = doc["maxEvents"]?.intValue { out += " of max \(max)" }
        if doc["full"] == .bool(true) { out += "   FULL: new events refused, bills get no 0x40 (outboxMaxEvents)" }
        out += "\n"
        if let pending = doc["pending"]?.objectValue, !pending.isEmpty {
            var t = TextTable(["service", "event", "pending", "oldest"], rightAligned: [2, 3], indent: "  ")
            for service in pending.keys.sorted() {
                let age = doc["oldestPendingAgeSeconds"]?[service]?.doubleValue
                let types = pending[service]?.objectValue ?? [:]
                if types.isEmpty { t.add([service, "-", "0", "-"]) }
                for type in types.keys.sorted() {
                    t.add([service, type, String(types[type]?.intValue ?? 0), age.map(Format.duration) ?? "-"])
                }
            }
            out += t.rendered
        }
        if let stream = doc["stream"], stream["name"] != nil { out += renderStream(stream) }
        if let counters = doc["counters"]?.objectValue, !counters.isEmpty {
            let parts = counters.keys.sorted().compactMap { k -> String? in
                guard let n = counters[k]?.doubleValue else { return nil }
                return "\(k) \(n.rounded() == n ? String(Int(n)) : Format.rate(n))"
            }
            out += "counters  " + parts.joined(separator: "   ") + "\n"
            if let refused = counters["refusedFull"]?.objectValue, !refused.isEmpty {
                out += "refused (full)  " + refused.keys.sorted().map { "\($0) \(refused[$0]?.intValue ?? 0)" }.joined(separator: "   ") + "\n"
            }
        }
        return out
    }

    /// Cluster mode: the event stream (messages, sequences), each service's durable consumer
    /// (not yet delivered, waiting for an ack, redelivered) and this node's stream counters.
    static func renderStream(_ stream: JSONValue) -> String {
        let int = { (v: JSONValue?) in v?.intValue.map(String.init) ?? "?" }
        var out = "stream \(stream["name"]?.stringValue ?? "?")   \(stream["available"] == .bool(true) ? "available" : "UNAVAILABLE")"
        out += "   messages \(int(stream["messages"]))   last seq \(int(stream["lastSequence"]))"
        if let window = stream["duplicateWindowSeconds"]?.doubleValue { out += "   dedup window \(Format.duration(window))" }
        if let backlog = stream["forwardBacklog"]?.intValue { out += "   to forward \(backlog)" }
        out += "\n"
        if let consumers = stream["consumers"]?.objectValue, !consumers.isEmpty {
            var t = TextTable(["consumer", "service", "pending", "ack pending", "redelivered", "ack floor"], rightAligned: [2, 3, 4, 5], indent: "  ")
            for name in consumers.keys.sorted() {
                let c = consumers[name] ?? .null
                t.add([name, c["service"]?.stringValue ?? "", int(c["pending"]), int(c["ackPending"]), int(c["redelivered"]), int(c["ackFloor"])])
            }
            out += t.rendered
        }
        if let counters = stream["counters"]?.objectValue, !counters.isEmpty {
            out += "stream counters  " + counters.keys.sorted().map { "\($0) \(counters[$0]?.intValue ?? 0)" }.joined(separator: "   ") + "\n"
        }
        return out
    }
}
