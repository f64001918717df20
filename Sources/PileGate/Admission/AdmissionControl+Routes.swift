import Foundation
import Hummingbird
import NIOCore

/// One flapping ban as `GET /v1/bans` shows it (docs/API.md, "Flapping bans").
struct BanView: Codable, Sendable {
    /// `pile:<id>` or `addr:<ip>`: what `DELETE /v1/bans/{key}` takes.
    var key: String
    /// `pile` or `address`.
    var kind: String
    var since: Date
    var until: Date
    var remainingSeconds: Int
    /// Why: the connects (or logins) counted in the window, over the limit.
    var connects: Int
    var limit: Int
    var windowSeconds: Double
}

extension AdmissionControl {
    /// The bans in force, pile bans first, each kind by key.
    func banViews() -> [BanView] {
        let now = NIODeadline.now()
        let wall = Date()
        func views(_ detector: FlapDetector, kind: String, prefix: String, limit: Int) -> [BanView] {
            detector.bans(now: now).map { b in
                let remaining = Double(b.remaining.nanoseconds) / 1e9
                return BanView(
                    key: prefix + b.key, kind: kind, since: b.since, until: wall.addingTimeInterval(remaining),
                    remainingSeconds: Int(remaining.rounded(.up)), connects: b.connects, limit: limit,
                    windowSeconds: config.flapWindow)
            }
        }
        return views(pileFlaps, kind: "pile", prefix: "pile:", limit: config.flapMaxConnects)
            + views(addressFlaps, kind: "address", prefix: "addr:", limit: config.flapMaxConnectsPerAddress)
    }

    /// Lifts one ban; false when there is none for `key`.
    func lift(_ key: BanKey) -> Bool {
        switch key {
        case .pile(let id):
            guard pileFlaps.lift(id.description) else { return false }
            reportPileBanChange(.lifted(pile: id.description))
            return true
        case .address(let host): return addressFlaps.lift(host)
        }
    }

    /// Installs the ban routes on the admin API (docs/API.md, "Flapping bans").
    ///
    /// - `GET /v1/bans` → 200 `{"bans":[BanView…]}`.
    /// - `DELETE /v1/bans/{key}` → 200 `{"lifted":key}`, 404 `no_ban`, 400 `invalid_ban_key`.
    static func installRoutes(_ router: Router<AdminAPI.Context>, gateway: Gateway) {
        let admission = gateway.context.admission
        let logger = gateway.context.logger
        router.get("/v1/bans") { _, _ in
            try AdminAPI.encode(["bans": admission.banViews()])
        }
        router.delete("/v1/bans/:key") { _, context in
            let text = context.parameters.get("key") ?? ""
            guard let key = BanKey(text) else {
                return AdminAPI.error(
                    .badRequest, "invalid_ban_key",
                    "invalid ban key '\(text.prefix(80))': expected pile:<pile id> or addr:<IPv4 or IPv6 address>")
            }
            guard admission.lift(key) else {
                return AdminAPI.error(.notFound, "no_ban", "\(key) is not banned")
            }
            logger.notice("flapping ban lifted", metadata: ["key": "\(key)"])
            return AdminAPI.json(["lifted": key.description])
        }
    }
}
