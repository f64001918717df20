import Foundation
import YKC

/// What a pile-initiated start names its driver by: a physical card number (start method 1) or
/// a VIN (start method 3). The key of the offline decision cache and of the allow-list.
///
/// Written `card:<16 hex digits>` or `vin:<VIN>`, upper case: one spelling per credential, so a
/// card in the allow-list matches whatever zero-padding or case the operator wrote it with.
struct OfflineCredential: Hashable, Sendable, CustomStringConvertible {
    enum Kind: String, Sendable { case card, vin }
    var kind: Kind
    /// The card as 16 upper-case hex digits, or the VIN in upper case.
    var value: String

    var description: String { "\(kind.rawValue):\(value)" }

    init(card: BinaryID) {
        kind = .card
        value = card.description.uppercased()
    }

    /// A VIN as the pile sent it; nil when it is empty (all zero bytes) or not 17 letters and digits.
    init?(vin: String) {
        let trimmed = String(vin.unicodeScalars.filter { $0 != "\0" && $0 != " " })
        guard trimmed.utf8.count == 17, trimmed.utf8.allSatisfy({ Self.isAlphanumeric($0) }) else { return nil }
        kind = .vin
        value = trimmed.uppercased()
    }

    /// An allow-list entry: a card number of up to 16 hex digits, or a 17-character VIN, with
    /// an optional `card:` or `vin:` prefix. Nil when it is neither.
    init?(entry: String) {
        let text = entry.trimmingCharacters(in: .whitespaces)
        let lower = text.lowercased()
        if lower.hasPrefix("card:") {
            guard let card = BinaryID(text.dropFirst(5)), text.count > 5 else { return nil }
            self.init(card: card)
        } else if lower.hasPrefix("vin:") {
            self.init(vin: String(text.dropFirst(4)))
        } else if text.utf8.count == 17 {
            self.init(vin: text)
        } else if !text.isEmpty, let card = BinaryID(text) {
            self.init(card: card)
        } else {
            return nil
        }
    }

    /// The credential of a start request, or nil when it has none the policy can judge (start
    /// method 2, account, which the protocol leaves unsupported; a VIN start without a VIN).
    init?(startMethod: StartMethod, card: BinaryID, vin: String) {
        switch startMethod {
        case .card: self.init(card: card)
        case .vin: self.init(vin: vin)
        default: return nil
        }
    }

    private static func isAlphanumeric(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
    }
}
