import Foundation

/// One API credential as stored and listed: its name, scopes and limits, never its secret (only
/// the secret's SHA-256 is kept, in `TokenStore`).
///
/// A limit of `nil` means "any"; a list limits the token to those lanes ("" is the base lane),
/// services (the `service` of a WebSocket subscription) or command kinds (`set_rate`, …).
public struct APIToken: Codable, Sendable, Equatable {
    public var name: String
    public var scopes: [APIScope]
    public var lanes: [String]?
    public var services: [String]?
    public var commands: [String]?
    public var createdAt: Date

    public init(name: String, scopes: [APIScope], lanes: [String]? = nil, services: [String]? = nil, commands: [String]? = nil, createdAt: Date = Date()) {
        self.name = name
        self.scopes = scopes
        self.lanes = lanes
        self.services = services
        self.commands = commands
        self.createdAt = createdAt
    }

    /// The longest list a limit may hold; a token is a credential, not a routing table.
    public static let maxListCount = 256

    /// Checks the name and limits; the error names the first problem.
    public func validate() throws(APITokenError) {
        guard Self.validName(name) else {
            throw APITokenError(code: "invalid_name", message: "token name must be 1-64 letters, digits, '-', '_', '.'")
        }
        guard !scopes.isEmpty else { throw APITokenError(code: "invalid_scope", message: "at least one scope is required") }
        for (label, list, allowEmpty) in [("lanes", lanes, true), ("services", services, false), ("commands", commands, false)] {
            guard let list else { continue }
            guard !list.isEmpty else {
                throw APITokenError(code: "invalid_limit", message: "\(label) must list at least one entry (omit it for any)")
            }
            guard list.count <= Self.maxListCount else {
                throw APITokenError(code: "invalid_limit", message: "\(label) may list at most \(Self.maxListCount) entries")
            }
            for entry in list where !(allowEmpty && entry.isEmpty) && !Self.validName(entry) {
                throw APITokenError(code: "invalid_limit", message: "\(label) entry '\(entry.prefix(64))' is not a name of letters, digits, '-', '_', '.'")
            }
        }
        if let commands {
            for c in commands where !BackendCommands.names.contains(c) {
                throw APITokenError(
                    code: "invalid_limit",
                    message: "unknown command '\(c.prefix(64))'; one of \(BackendCommands.names.sorted().joined(separator: ", "))")
            }
        }
    }

    /// Names of letters, digits, '-', '_', '.'; at most 64 bytes (as tags and lane names).
    static func validName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64
            && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 45 || $0 == 46 || $0 == 95 }
    }
}
