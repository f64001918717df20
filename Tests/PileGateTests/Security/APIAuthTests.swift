import Foundation
import PileGate
import Testing
import YKC

/// Bearer tokens and scopes on the API, driven over loopback the way operators and backends call
/// it: every endpoint and WebSocket message against no token, a wrong token and each scope.
@Suite("Security: API tokens and scopes")
struct APIAuthTests {
    /// One single-scope token per scope, plus the secrets, on a gateway that now enforces tokens.
    static func tokens(_ gw: AssembledGateway) async throws -> [APIScope: String] {
        var out: [APIScope: String] = [:]
        for scope in APIScope.allCases {
            let name = scope.rawValue.replacingOccurrences(of: ":", with: "-")
            out[scope] = try await gw.gateway.auth.tokens.create(APIToken(name: name, scopes: [scope])).secret
        }
        return out
    }

    /// Every HTTP route and the scope it needs (nil: public).
    static let routes: [(method: String, path: String, body: String?, scope: APIScope?)] = [
        ("GET", "/healthz", nil, nil),
        ("GET", "/readyz", nil, nil),
        ("GET", "/metrics", nil, nil),
        ("GET", "/", nil, .adminRead),
        ("GET", "/v1/stats", nil, .adminRead),
        ("GET", "/v1/piles", nil, .adminRead),
        ("GET", "/v1/piles/1", nil, .adminRead),
        ("GET", "/v1/lanes", nil, .adminRead),
        ("GET", "/v1/hub", nil, .adminRead),
        ("GET", "/v1/outbox", nil, .adminRead),
        ("GET", "/v1/outbox/events", nil, .adminRead),
        ("GET", "/v1/tokens", nil, .adminRead),
        ("GET", "/v1/no-such-route", nil, .adminRead),
        ("PUT", "/v1/piles/1", nil, .adminWrite),
        ("DELETE", "/v1/piles/1", nil, .adminWrite),
        ("DELETE", "/v1/piles/1/connection", nil, .adminWrite),
        ("PUT", "/v1/lanes", "not json", .adminWrite),
        ("POST", "/v1/outbox/replay", "{}", .adminWrite),
        ("POST", "/v1/tokens", "{}", .adminWrite),
        ("DELETE", "/v1/tokens/nobody", nil, .adminWrite),
        ("POST", "/v1/config/reload", nil, .adminWrite),
        ("POST", "/v1/piles/1/commands/remote_stop", #"{"gun":1}"#, .commandsSend),
    ]

    @Test("scope matrix over HTTP: no token and a wrong token → 401 with WWW-Authenticate; each scope → allowed only where the table says, else 403")
    func httpMatrix() async throws {
        try await AssembledGateway.with(AssembledGateway.config()) { gw in
            let secrets = try await Self.tokens(gw)
            var credentials: [(label: String, secret: String?, scope: APIScope?)] = [("none", nil, nil), ("wrong", "pgt_not-a-token", nil)]
            for scope in APIScope.allCases { credentials.append((scope.rawValue, secrets[scope], scope)) }
            for route in Self.routes {
                for credential in credentials {
                    let answer = try await gw.http(route.method, route.path, token: credential.secret, body: route.body)
                    let what = "\(route.method) \(route.path) with \(credential.label): \(answer.status) \(answer.body.prefix(120))"
                    guard let needed = route.scope else {
                        #expect(answer.status == 200, "\(what)")
                        continue
                    }
                    if credential.scope == nil {
                        #expect(answer.status == 401, "\(what)")
                        #expect(answer.headers["www-authenticate"]?.hasPrefix("Bearer") == true, "\(what)")
                    } else if credential.scope == needed {
                        #expect(answer.status != 401 && answer.status != 403, "\(what)")
                    } else {
                        #expect(answer.status == 403, "\(what)")
                        #expect(answer.json["error"] as? String == "forbidden", "\(what)")
                    }
                }
            }
        }
    }

    @Test("scope matrix over the WebSocket: the upgrade needs events:subscribe; a command message needs commands:send")
    func webSocketMatrix() async throws {
        try await AssembledGateway.with(AssembledGateway.config()) { gw in
            let secrets = try await Self.tokens(gw)
            let both = try await gw.gateway.auth.tokens.create(APIToken(name: "backend", scopes: [.eventsSubscribe, .commandsSend])).secret
            // No token, a wrong token and every scope but events:subscribe: refused at the upgrade.
            var refused: [String?] = [nil, "pgt_wrong"]
            for scope in APIScope.allCases where scope != .eventsSubscribe { refused.append(secrets[scope]) }
            for secret in refused {
                let backend = try await TestBackend.connect(apiPort: gw.apiPort, token: secret)
                let closed = await gw.eventually { backend.isClosed }
                #expect(closed, "upgrade with \(secret ?? "no token") must be refused")
                #expect(backend.messages.isEmpty)
                await backend.close()
            }
            // events:subscribe alone: subscribes, but a command is refused on the socket.
            let subscriber = try await TestBackend.connect(apiPort: gw.apiPort, token: secrets[.eventsSubscribe])
            try await subscriber.subscribe(service: "billing", instance: "b1")
            subscriber.send(#"{"type":"command","requestId":"r1","pile":"1","command":"remote_stop","args":{"gun":1}}"#)
            let denied = try await subscriber.waitFor("result r1") { $0["requestId"] as? String == "r1" }
            #expect(denied["ok"] as? Bool == false && denied["error"] as? String == "forbidden", "\(denied)")
            await subscriber.close()
            // events:subscribe + commands:send: the command goes through (the pile is offline).
            let sender = try await TestBackend.connect(apiPort: gw.apiPort, token: both)
            try await sender.subscribe(service: "billing", instance: "b2")
            sender.send(#"{"type":"command","requestId":"r2","pile":"1","command":"remote_stop","args":{"gun":1}}"#)
            let passed = try await sender.waitFor("result r2") { $0["requestId"] as? String == "r2" }
            #expect(passed["error"] as? String == "pile_offline", "\(passed)")
            await sender.close()
        }
    }

    @Test("limits: services and lanes at subscribe, command kinds and lanes per command, over HTTP and the WebSocket")
    func limits() async throws {
        try await AssembledGateway.with(AssembledGateway.config()) { gw in
            let store = gw.gateway.auth.tokens
            let billing = try await store.create(APIToken(name: "billing", scopes: [.eventsSubscribe, .commandsSend], lanes: ["gray"], services: ["billing"], commands: ["remote_stop"])).secret

            let wrongService = try await TestBackend.connect(apiPort: gw.apiPort, token: billing)
            wrongService.send(#"{"type":"subscribe","service":"monitor","instance":"m1","lane":"gray","events":["*"]}"#)
            let e1 = try await wrongService.waitFor("error") { $0["type"] as? String == "error" }
            #expect(e1["error"] as? String == "forbidden" && (e1["message"] as? String ?? "").contains("monitor"), "\(e1)")
            // Refused, the socket may still subscribe within its limits.
            wrongService.send(#"{"type":"subscribe","service":"billing","instance":"b1","lane":"","events":["*"]}"#)
            let e2 = try await wrongService.waitFor("lane error") { $0["type"] as? String == "error" && ($0["message"] as? String ?? "").contains("lane") }
            #expect(e2["error"] as? String == "forbidden")
            try await wrongService.subscribe(service: "billing", instance: "b1", lane: "gray")
            wrongService.send(#"{"type":"command","requestId":"k1","pile":"1","command":"set_rate","args":{}}"#)
            let k1 = try await wrongService.waitFor("k1") { $0["requestId"] as? String == "k1" }
            #expect(k1["error"] as? String == "forbidden", "\(k1)")
            wrongService.send(#"{"type":"command","requestId":"k2","pile":"1","command":"remote_stop","args":{"gun":1}}"#)
            let k2 = try await wrongService.waitFor("k2") { $0["requestId"] as? String == "k2" }
            #expect(k2["error"] as? String == "pile_offline", "\(k2)")
            await wrongService.close()

            // Over HTTP: the kind and ?lane= must be within the limits.
            let kind = try await gw.http("POST", "/v1/piles/1/commands/set_rate?lane=gray", token: billing, body: "{}")
            #expect(kind.status == 403)
            let noLane = try await gw.http("POST", "/v1/piles/1/commands/remote_stop", token: billing, body: #"{"gun":1}"#)
            #expect(noLane.status == 403 && (noLane.json["message"] as? String ?? "").contains("lane"), "\(noLane.body)")
            let ok = try await gw.http("POST", "/v1/piles/1/commands/remote_stop?lane=gray", token: billing, body: #"{"gun":1}"#)
            #expect(ok.status == 404, "pile offline, but authorized: \(ok.body)")
        }
    }

    @Test("refusals are counted in /v1/stats and /metrics; no tokens means an open API; a revoked token stops working")
    func countersAndRevocation() async throws {
        try await AssembledGateway.with(AssembledGateway.config()) { gw in
            #expect(try await gw.http("GET", "/v1/stats").status == 200, "open while no token exists")
            let admin = try await gw.gateway.auth.tokens.create(APIToken(name: "ops", scopes: [.adminRead])).secret
            #expect(try await gw.http("GET", "/v1/stats").status == 401)
            #expect(try await gw.http("GET", "/v1/stats", token: "pgt_x").status == 401)
            #expect(try await gw.http("PUT", "/v1/piles/1", token: admin).status == 403)
            let stats = try await gw.http("GET", "/v1/stats", token: admin)
            let auth = (stats.json["extensions"] as? [String: Any])?["auth"] as? [String: Any]
            #expect(auth?["unauthorized"] as? Int == 2 && auth?["forbidden"] as? Int == 1 && auth?["enforced"] as? Bool == true, "\(stats.body)")
            let metrics = try await gw.http("GET", "/metrics")
            #expect(metrics.body.contains(#"pilegate_api_auth_refusals_total{result="unauthorized"} 2"#), "\(metrics.body.prefix(200))")
            #expect(metrics.body.contains(#"pilegate_api_auth_refusals_total{result="forbidden"} 1"#))
            try await gw.gateway.auth.tokens.revoke(name: "ops")
            #expect(try await gw.http("GET", "/v1/stats", token: admin).status == 200, "no token left: open again (loopback)")
            _ = try await gw.gateway.auth.tokens.create(APIToken(name: "other", scopes: [.adminRead]))
            #expect(try await gw.http("GET", "/v1/stats", token: admin).status == 401, "the revoked secret is unknown")
        }
    }

    @Test("tokens through the CLI: create, list and revoke on the data directory (bootstrap) and through the API (remote); the running gateway follows")
    func cliTokens() async throws {
        try await AssembledGateway.with(AssembledGateway.config()) { gw in
            // Bootstrap on the data directory while the gateway runs.
            let created = try await CLI.run(["tokens", "create", "--data", gw.dataDirectory, "--name", "root", "--scopes", "admin:read,admin:write"])
            #expect(created.status == 0, "\(created.stderr)")
            let root = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(root.hasPrefix("pgt_") && root.count > 40, "\(created.stdout)")
            #expect(created.stderr.contains("shown only once"))
            // The gateway picks the outside change up within its refresh interval.
            let enforced = await gw.eventually(timeout: 5) { (try? await gw.http("GET", "/v1/stats").status) == 401 }
            #expect(enforced)
            #expect(try await gw.http("GET", "/v1/stats", token: root).status == 200)

            // Remote management through the API with the admin token (env variable form).
            let env = ["PILEGATE_TOKEN": root, "PILEGATE_API": gw.api]
            let exe = try #require(CLI.executable)
            let remote = try await CLI.spawn(exe, ["tokens", "create", "--name", "billing", "--scopes", "events:subscribe", "--services", "billing", "--lanes=,gray"], environment: env)
            #expect(remote.status == 0, "\(remote.stderr)")
            let billing = remote.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(billing.hasPrefix("pgt_"))
            let list = try await CLI.spawn(exe, ["tokens", "list"], environment: env)
            #expect(list.status == 0 && list.stdout.contains("billing") && list.stdout.contains("(base),gray") && list.stdout.contains("root"), "\(list.stdout)\(list.stderr)")
            #expect(!list.stdout.contains(billing) && !list.stdout.contains(root), "never a secret")
            let localList = try await CLI.run(["tokens", "list", "--json", "--data", gw.dataDirectory])
            #expect(localList.json?["tokens"]?.arrayValue?.count == 2)
            // Without a token the API says 401 and the CLI one line.
            let denied = try await CLI.run(["tokens", "list", "--api", gw.api])
            #expect(denied.status == 1 && denied.stderr.contains("401"), "\(denied.stderr)")
            // A token without admin:write cannot mint tokens.
            let weak = try await CLI.run(["stats", "--json", "--api", gw.api, "--token", billing])
            #expect(weak.status == 1 && weak.stderr.contains("403"), "\(weak.stderr)")
            let stats = try await CLI.run(["stats", "--json", "--api", gw.api, "--token", root])
            #expect(stats.status == 0, "\(stats.stderr)")

            let revoke = try await CLI.spawn(exe, ["tokens", "revoke", "billing"], environment: env)
            #expect(revoke.status == 0 && revoke.stdout.contains("revoked"), "\(revoke.stderr)")
            #expect(try await gw.http("GET", "/v1/tokens", token: billing).status == 401)
            let again = try await CLI.spawn(exe, ["tokens", "revoke", "billing"], environment: env)
            #expect(again.status == 1 && again.stderr.contains("404"), "\(again.stderr)")
            let bad = try await CLI.run(["tokens", "create", "--data", gw.dataDirectory, "--name", "x", "--scopes", "admin:everything"])
            #expect(bad.status == 1 && bad.stderr.contains("unknown scope 'admin:everything'"), "\(bad.stderr)")
            // Revoked on the directory, the running gateway follows.
            let localRevoke = try await CLI.run(["tokens", "revoke", "--data", gw.dataDirectory, "root"])
            #expect(localRevoke.status == 0)
            let open = await gw.eventually(timeout: 5) { (try? await gw.http("GET", "/v1/stats", token: root).status) == 200 }
            #expect(open, "no token left: the loopback API is open again")
        }
    }

    @Test("the API refuses to start on a non-loopback address without authentication, naming the fix; a token or apiInsecure lets it start")
    func nonLoopbackRefusal() async throws {
        var config = AssembledGateway.config { $0.apiHost = "0.0.0.0" }
        do {
            let gw = try await AssembledGateway.start(config)
            await gw.stop()
            Issue.record("started without authentication on 0.0.0.0")
        } catch {
            let text = "\(error)"
            #expect(text.hasPrefix("refusing to serve the API on 0.0.0.0:0 without authentication"), "\(text)")
            #expect(text.contains("apiInsecure") && text.contains("pilegate tokens create"))
        }
        // With a token in the data directory it starts, and requires it.
        _ = try await TokenStore(directory: config.dataDirectory).create(APIToken(name: "root", scopes: [.adminRead]))
        try await AssembledGateway.with(config) { gw async throws in
            #expect(try await gw.http("GET", "/v1/stats").status == 401)
            // Revoking the last token does not open a non-loopback API: it fails closed.
            try await gw.gateway.auth.tokens.revoke(name: "root")
            #expect(try await gw.http("GET", "/v1/stats").status == 401)
            #expect(try await gw.http("GET", "/healthz").status == 200)
        }
        config.dataDirectory += "-insecure"
        config.apiInsecure = true
        try await AssembledGateway.with(config) { gw async throws in
            #expect(try await gw.http("GET", "/v1/stats").status == 200)
        }
    }

    @Test("the CLI's own variables (PILEGATE_API, PILEGATE_TOKEN) do not stop `serve`; a typo still does")
    func clientEnvironment() async throws {
        let config = try GatewayConfiguration.load(file: nil, environment: ["PILEGATE_API": "http://x:1", "PILEGATE_TOKEN": "pgt_x", "PILEGATE_API_INSECURE": "true"])
        #expect(config.apiInsecure)
        #expect(throws: ConfigurationError.self) { try GatewayConfiguration.load(file: nil, environment: ["PILEGATE_TOKENS": "x"]) }
        let exe = try #require(CLI.executable)
        let serve = try await CLI.spawn(exe, ["serve", "--print-config"], environment: ["PILEGATE_API": "http://127.0.0.1:1", "PILEGATE_TOKEN": "pgt_x"])
        #expect(serve.status == 0, "\(serve.stderr)")
        #expect(serve.stdout.contains(#""apiInsecure": false"#))
        let scopes = try GatewayConfiguration.load(
            file: nil,
            environment: [
                "PILEGATE_API_TLSCERTIFICATE": "/c.pem", "PILEGATE_API_TLSKEY": "/k.pem", "PILEGATE_API_CLIENT_CA": "/ca.pem",
                "PILEGATE_API_CLIENT_CERTIFICATE_SCOPES": #"{"CN=billing":["events:subscribe"]}"#,
            ])
        #expect(scopes.apiClientCertificateScopes == ["CN=billing": ["events:subscribe"]])
        #expect(throws: ConfigurationError.self) {
            try GatewayConfiguration.load(file: nil, environment: ["PILEGATE_API_CLIENT_CERTIFICATE_SCOPES": #"{"billing":["events:subscribe"]}"#])
        }
    }
}
