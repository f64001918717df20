import ArgumentParser
import Foundation
import YKC

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The CLI's HTTP client for the gateway's admin API (`--api`, default http://127.0.0.1:8780).
///
/// Every admin verb goes through `send`: a gateway that cannot be reached and an answer with a
/// 4xx/5xx status both become an `AdminClient.Failure`, which `AdminCommand.report` turns into one
/// line on stderr and a non-zero exit.
struct AdminClient: Sendable {
    static let defaultURL = "http://127.0.0.1:8780"

    /// The API's base URL as the user gave it (without a trailing slash), for messages.
    let api: String
    private let base: URL
    /// Sent as `Authorization: Bearer …` when set (`--token` / `PILEGATE_TOKEN`).
    let token: String?
    /// `--cacert/--cert/--key`: when any is set, requests go through `TLSHTTPClient`.
    let tls: TLSHTTPClient.Options

    enum Failure: Error, Sendable {
        /// No HTTP answer at all: refused, timed out, bad host.
        case unreachable(api: String, reason: String)
        /// An answer with status ≥ 400; `code` and `message` from the `{"error","message"}` body when present.
        case http(method: String, path: String, status: Int, code: String?, message: String)
    }

    struct Answer: Sendable {
        var status: Int
        var data: Data
        var text: String { String(decoding: data, as: UTF8.self) }
        var json: JSONValue? { try? JSONValue.parse(data) }
    }

    init(api: String, token: String? = nil, tls: TLSHTTPClient.Options = .init()) throws {
        var text = api.trimmingCharacters(in: .whitespaces)
        while text.hasSuffix("/") { text.removeLast() }
        if !text.contains("://") { text = "http://" + text }
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            url.host != nil
        else {
            throw ValidationError("--api must be an http(s) URL such as \(Self.defaultURL), got '\(api)'")
        }
        self.api = text
        self.base = url
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
        self.tls = tls
    }

    /// Sends one request; returns the answer when its status is below 400.
    func send(
        _ method: String, _ path: String, query: [URLQueryItem] = [], body: Data? = nil, timeout: TimeInterval = 10
    ) async throws(Failure) -> Answer {
        var components = URLComponents(string: api + path)
        if !query.isEmpty { components?.queryItems = query }
        guard let url = components?.url else {
            throw .unreachable(api: api, reason: "cannot form a URL from '\(api + path)'")
        }
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = method
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let data: Data
        let status: Int
        if !tls.isEmpty {
            var headers: [(String, String)] = []
            if let token { headers.append(("Authorization", "Bearer \(token)")) }
            if body != nil { headers.append(("Content-Type", "application/json")) }
            do {
                (status, data) = try await TLSHTTPClient.send(url: url, method: method, headers: headers, body: body, timeout: timeout, options: tls)
            } catch {
                throw .unreachable(api: api, reason: "\(error)")
            }
        } else {
            let response: URLResponse
            do {
                (data, response) = try await URLSession.shared.data(for: request)
            } catch {
                throw .unreachable(api: api, reason: Self.reason(error))
            }
            status = (response as? HTTPURLResponse)?.statusCode ?? 0
        }
        let answer = Answer(status: status, data: data)
        guard status >= 400 || status == 0 else { return answer }
        let json = answer.json
        let code = json?["error"]?.stringValue
        let message = json?["message"]?.stringValue ?? Self.firstLine(answer.text, or: HTTPURLResponse.localizedString(forStatusCode: status))
        throw .http(method: method, path: path, status: status, code: code, message: message)
    }

    func get(_ path: String, query: [URLQueryItem] = []) async throws(Failure) -> Answer {
        try await send("GET", path, query: query)
    }

    /// A short human reason for a transport error (URLError's own text is often just a code).
    static func reason(_ error: any Error) -> String {
        if let e = error as? URLError {
            switch e.code {
            case .cannotConnectToHost: return "connection refused"
            case .timedOut: return "timed out"
            case .cannotFindHost, .dnsLookupFailed: return "host not found"
            case .networkConnectionLost: return "connection lost"
            case .notConnectedToInternet: return "network unreachable"
            case .badServerResponse: return "bad response (is this the gateway's API port?)"
            case .secureConnectionFailed, .serverCertificateUntrusted, .serverCertificateHasBadDate:
                return "TLS failed"
            default: return "\(e.localizedDescription) (URLError \(e.code.rawValue))"
            }
        }
        return "\(error)"
    }

    static func firstLine(_ text: String, or fallback: String) -> String {
        let line = text.split(whereSeparator: \.isNewline).first.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? ""
        return line.isEmpty ? fallback : String(line.prefix(300))
    }
}

extension AdminClient.Failure: CustomStringConvertible {
    /// The one line printed after "pilegate: ".
    var description: String {
        switch self {
        case .unreachable(let api, let reason):
            return "cannot reach the gateway at \(api): \(reason)"
        case .http(let method, let path, let status, let code, let message):
            return "\(method) \(path): \(status)\(code.map { " \($0)" } ?? ""): \(message)"
        }
    }

    /// 2 when the gateway could not be reached, 1 when it answered with an error.
    var exitCode: ExitCode {
        switch self {
        case .unreachable: ExitCode(2)
        case .http: ExitCode(1)
        }
    }
}
