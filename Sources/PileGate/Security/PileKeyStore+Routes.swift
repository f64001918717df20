import Foundation
import Hummingbird
import NIOCore
import YKC
import YKCCipher

extension PileKeyStore {
    /// Largest accepted `PUT /v1/piles/{id}/key` body; larger bodies get 413.
    public static let maxRequestBytes = 4_096

    /// Installs the key routes on the admin API (docs/API.md, "Frame encryption keys").
    ///
    /// - `PUT /v1/piles/{id}/key` with `{"key":"<32 or 48 hex>","mode":"ecb"|"cbc","padding":"pkcs7"|"zero",
    ///   "iv":"<16 hex>"}` (mode, padding, iv optional) → 201 (new) or 200 (replaced) with the view;
    ///   400 `invalid_json` or `invalid_key` naming the problem. The key is never echoed.
    /// - `GET /v1/piles/{id}/key` → 200 with the view (fingerprint, no key) or 404 `no_key`.
    /// - `DELETE /v1/piles/{id}/key` → 200 `{"removed":id}` or 404 `no_key`.
    static func installRoutes(_ router: Router<AdminAPI.Context>, gateway: Gateway) {
        let keys = gateway.context.keys
        let logger = gateway.context.logger
        router.put("/v1/piles/:id/key") { request, context in
            let id = try AdminAPI.pileId(context)
            let json = try await AdminAPI.jsonBody(request, upTo: Self.maxRequestBytes)
            guard json.objectValue != nil else {
                return AdminAPI.error(.badRequest, "invalid_json", "the body must be a JSON object")
            }
            guard let hexKey = json["key"]?.stringValue else {
                return AdminAPI.error(.badRequest, "invalid_key", "key is required: 32 or 48 hex digits")
            }
            let modeText = json["mode"]?.stringValue ?? FrameCipher.Mode.ecb.rawValue
            let paddingText = json["padding"]?.stringValue ?? FrameCipher.Padding.pkcs7.rawValue
            guard let mode = FrameCipher.Mode(rawValue: modeText) else {
                return AdminAPI.error(.badRequest, "invalid_key", PileKeyError.mode(String(modeText.prefix(16))).description)
            }
            guard let padding = FrameCipher.Padding(rawValue: paddingText) else {
                return AdminAPI.error(.badRequest, "invalid_key", PileKeyError.padding(String(paddingText.prefix(16))).description)
            }
            let iv: String?
            switch json["iv"] {
            case nil, .null?: iv = nil
            case .string(let s)?: iv = s
            default: return AdminAPI.error(.badRequest, "invalid_key", "iv must be a string of 16 hex digits")
            }
            do {
                let (view, replaced) = try await keys.set(pile: id, hexKey: hexKey, mode: mode, padding: padding, hexIV: iv)
                logger.notice(
                    "pile frame key set",
                    metadata: ["pile": "\(id)", "mode": "\(mode.rawValue)", "padding": "\(padding.rawValue)", "fingerprint": "\(view.fingerprint)"])
                return try AdminAPI.encode(view, status: replaced ? .ok : .created)
            } catch let error as FrameCipherError {
                return AdminAPI.error(.badRequest, "invalid_key", error.description)
            }
        }
        router.get("/v1/piles/:id/key") { _, context in
            let id = try AdminAPI.pileId(context)
            guard let view = keys.view(for: id) else {
                return AdminAPI.error(.notFound, "no_key", "pile \(id) has no frame key")
            }
            return try AdminAPI.encode(view)
        }
        router.delete("/v1/piles/:id/key") { _, context in
            let id = try AdminAPI.pileId(context)
            guard try await keys.remove(pile: id) else {
                return AdminAPI.error(.notFound, "no_key", "pile \(id) has no frame key")
            }
            logger.notice("pile frame key removed", metadata: ["pile": "\(id)"])
            return AdminAPI.json(["removed": id.description])
        }
    }
}
