import Foundation

/// Credentials sent in CONNECT.
///
/// `description` never prints a secret (token, password, seed, JWT), so options can be logged.
public enum NATSAuthentication: Sendable, Equatable {
    case none
    /// `authorization { token: … }` on the server.
    case token(String)
    /// `authorization { users: [{user, password}] }` on the server.
    case userPassword(user: String, password: String)
    /// `authorization { users: [{nkey: U…}] }` on the server: CONNECT carries the public key and the
    /// signature of the server's nonce.
    case nkey(NKey)
    /// Operator mode (decentralised JWT auth): CONNECT carries the user JWT and the signature of the
    /// nonce made with the user's seed, both from a `.creds` file.
    case credentials(jwt: String, nkey: NKey)

    /// Largest credentials or seed file read (a `.creds` file is about 1 KiB): a wrong path pointing at
    /// a huge file is an error, not a memory spike.
    static let maximumFileSize = 64 * 1024

    /// Reads a `.creds` file (a `-----BEGIN NATS USER JWT-----` block and a `-----BEGIN USER NKEY
    /// SEED-----` block) or a file holding an NKey seed alone (`SU…` on a line of its own).
    public static func fromFile(_ path: String) throws -> NATSAuthentication {
        let data: Data
        do {
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            data = try handle.read(upToCount: maximumFileSize + 1) ?? Data()
        } catch {
            throw NKeyError.unreadableFile(path: path, reason: "\((error as NSError).localizedDescription)")
        }
        guard data.count <= maximumFileSize else {
            throw NKeyError.unreadableFile(path: path, reason: "larger than \(maximumFileSize) bytes")
        }
        return try parse(String(decoding: data, as: UTF8.self))
    }

    /// Parses the text of a `.creds` file or of a seed file (see `fromFile`).
    public static func parse(_ text: String) throws -> NATSAuthentication {
        let lines = text.split(omittingEmptySubsequences: true, whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        guard lines.contains(where: Self.isMarker) else {
            // A bare seed file: the first line that looks like a user seed.
            guard let seed = lines.first(where: { $0.hasPrefix("SU") }) else {
                throw NKeyError.invalidCredentials("no '-----BEGIN' blocks and no line starting with 'SU'")
            }
            return .nkey(try NKey(seed: seed))
        }
        var jwt: String?
        var seed: String?
        var index = 0
        while index < lines.count {
            let line = lines[index]
            index += 1
            guard isMarker(line), line.uppercased().contains("BEGIN") else { continue }
            guard index < lines.count, !isMarker(lines[index]) else {
                throw NKeyError.invalidCredentials("empty block after '\(line)'")
            }
            let content = lines[index]
            index += 1
            guard index < lines.count, isMarker(lines[index]), lines[index].uppercased().contains("END") else {
                throw NKeyError.invalidCredentials("block '\(line)' is not closed by an END line")
            }
            index += 1
            let upper = line.uppercased()
            if upper.contains("JWT"), jwt == nil {
                jwt = content
            } else if upper.contains("SEED"), seed == nil {
                seed = content
            }
        }
        guard let seed else { throw NKeyError.invalidCredentials("no NKEY SEED block") }
        let key = try NKey(seed: seed)
        guard let jwt else { return .nkey(key) }
        guard jwt.split(separator: ".", omittingEmptySubsequences: false).count == 3 else {
            throw NKeyError.invalidCredentials("the JWT block does not hold a JWT (three dot-separated parts)")
        }
        return .credentials(jwt: jwt, nkey: key)
    }

    /// `-----BEGIN NATS USER JWT-----`, `------END USER NKEY SEED------` and the like.
    private static func isMarker(_ line: String) -> Bool {
        line.hasPrefix("---") && line.hasSuffix("---")
    }
}

extension NATSAuthentication: CustomStringConvertible {
    public var description: String {
        switch self {
        case .none: "none"
        case .token: "token(redacted)"
        case .userPassword(let user, _): "user(\(user), password redacted)"
        case .nkey(let key): "nkey(\(key.publicKey))"
        case .credentials(_, let key): "credentials(\(key.publicKey))"
        }
    }
}
