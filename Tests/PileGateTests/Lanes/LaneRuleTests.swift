import Foundation
import Logging
import NIOCore
import PileGate
import Testing
import YKC

/// Lane rules: matching per key, first match wins, stable percentages, CIDR and glob edge cases,
/// validation naming rule and key, persistence across reopening, and the `/v1/lanes` routes.
@Suite("Lane rules")
struct LaneRuleTests {
    // MARK: helpers

    static func login(
        _ id: String = "32010600019236", type: PileType = .dc, version: UInt8 = 16, firmware: String = "V1.2.3",
        network: NetworkType = .lan, carrier: Carrier = .chinaMobile
    ) -> Login {
        Login(
            pileId: PileID(id) ?? PileID(raw: 0), pileType: type, gunCount: 2, protocolVersion: version,
            firmwareVersion: firmware, networkType: network, sim: "00000000000000000000", carrier: carrier)
    }

    /// A rule book on its own temporary database.
    final class TempBook: Sendable {
        let directory: String
        let registry: PileRegistry
        let book: LaneRuleBook

        init(directory: String = NSTemporaryDirectory() + "pilegate-lanes-" + UUID().uuidString) throws {
            self.directory = directory
            var logger = Logger(label: "lane-test")
            logger.logLevel = .critical
            registry = try PileRegistry(directory: directory, logger: logger)
            book = try LaneRuleBook(registry: registry, logger: logger)
        }

        func remove() { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// Parses a `{"rules":[…]}` document and applies it, as `PUT /v1/lanes` would.
    static func book(_ rulesJSON: String) async throws -> TempBook {
        let t = try TempBook()
        try await t.book.replace(with: try parse(rulesJSON))
        return t
    }

    static func parse(_ rulesJSON: String) throws -> [LaneRule] {
        try LaneRuleDocument.parseRequest(try JSONValue.parse(#"{"rules":\#(rulesJSON)}"#)).rules
    }

    /// The validation error for a rules list, from parsing or from validation.
    static func error(_ rulesJSON: String) -> String? {
        do {
            try LaneRuleBook.validate(try parse(rulesJSON))
            return nil
        } catch let e as LaneRuleError {
            return e.description
        } catch {
            return "unexpected: \(error)"
        }
    }

    /// Lane for one rule `match` against a login and address.
    static func lane(match: String, _ login: Login = login(), host: String = "10.1.2.3") async throws -> String {
        let t = try await book(#"[{"lane":"gray","match":\#(match)}]"#)
        defer { t.remove() }
        return t.book.lane(for: login, remoteHost: host)
    }

    // MARK: matching per key

    @Test("piles and pilePrefix")
    func pilesAndPrefix() async throws {
        #expect(try await Self.lane(match: #"{"piles":["32010600019236","1"]}"#) == "gray")
        #expect(try await Self.lane(match: #"{"piles":["32010600019237"]}"#) == "")
        #expect(try await Self.lane(match: #"{"piles":["1"]}"#, Self.login("00000000000001")) == "gray")
        #expect(try await Self.lane(match: #"{"piles":[]}"#) == "")
        #expect(try await Self.lane(match: #"{"pilePrefix":"3201"}"#) == "gray")
        #expect(try await Self.lane(match: #"{"pilePrefix":"32010600019236"}"#) == "gray")
        #expect(try await Self.lane(match: #"{"pilePrefix":"3202"}"#) == "")
        #expect(try await Self.lane(match: #"{"pilePrefix":"2"}"#) == "")
        // The prefix is of the 14-digit id, leading zeros included.
        #expect(try await Self.lane(match: #"{"pilePrefix":"000"}"#, Self.login("12345")) == "gray")
    }

    @Test("pile type, protocol version, carrier and network type, by name and by number")
    func loginAttributes() async throws {
        #expect(try await Self.lane(match: #"{"pileType":"dc"}"#) == "gray")
        #expect(try await Self.lane(match: #"{"pileType":"ac"}"#) == "")
        #expect(try await Self.lane(match: #"{"pileType":"ac"}"#, Self.login(type: .ac)) == "gray")
        #expect(try await Self.lane(match: #"{"protocolVersion":16}"#) == "gray")
        #expect(try await Self.lane(match: #"{"protocolVersion":15}"#) == "")
        #expect(try await Self.lane(match: #"{"protocolVersion":15}"#, Self.login(version: 15)) == "gray")
        #expect(try await Self.lane(match: #"{"carrier":"china_mobile"}"#) == "gray")
        #expect(try await Self.lane(match: #"{"carrier":0}"#) == "gray")
        #expect(try await Self.lane(match: #"{"carrier":"china_unicom"}"#) == "")
        #expect(try await Self.lane(match: #"{"carrier":3}"#, Self.login(carrier: .chinaUnicom)) == "gray")
        #expect(try await Self.lane(match: #"{"carrier":9}"#, Self.login(carrier: .unrecognized(9))) == "gray")
        #expect(try await Self.lane(match: #"{"networkType":"lan"}"#) == "gray")
        #expect(try await Self.lane(match: #"{"networkType":1}"#) == "gray")
        #expect(try await Self.lane(match: #"{"networkType":"sim"}"#) == "")
        #expect(try await Self.lane(match: #"{"networkType":"sim"}"#, Self.login(network: .sim)) == "gray")
    }

    @Test("firmware globs: * and ?, literal otherwise, case-sensitive, padding ignored")
    func firmwareGlob() async throws {
        let cases: [(String, String, Bool)] = [
            ("V1.2.3", "V1.2.3", true), ("V1.*", "V1.2.3", true), ("V1.*", "V1.", true), ("V1.*", "V2.0", false),
            ("*", "anything", true), ("*", "", true), ("V?.2.3", "V1.2.3", true), ("V?.2.3", "V10.2.3", false),
            ("*.3", "V1.2.3", true), ("*.3", "V1.2.4", false), ("v1.2.3", "V1.2.3", false), ("V1*3", "V1.2.3", true),
            ("V1.2.3", "V1.2.3  ", true), ("V1.2", "V1.2.3", false), ("*2*", "V1.2.3", true), ("**?", "", false),
            ("a*b*c", "aXXbYYc", true), ("a*b*c", "aXXbYY", false),
        ]
        for (pattern, firmware, expected) in cases {
            let lane = try await Self.lane(match: #"{"firmware":"\#(pattern)"}"#, Self.login(firmware: firmware))
            #expect(lane == (expected ? "gray" : ""), "'\(pattern)' vs '\(firmware)'")
        }
    }

    @Test("CIDR: IPv4 and IPv6 blocks, boundaries, mapped addresses, zones, non-IP hosts")
    func cidr() async throws {
        let cases: [(String, String, Bool)] = [
            ("10.0.0.0/8", "10.255.255.255", true), ("10.0.0.0/8", "11.0.0.0", false), ("10.0.0.0/8", "9.255.255.255", false),
            ("127.0.0.0/24", "127.0.0.1", true), ("127.0.0.0/24", "127.0.0.255", true), ("127.0.0.0/24", "127.0.1.0", false),
            ("192.168.1.7/32", "192.168.1.7", true), ("192.168.1.7/32", "192.168.1.8", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("0.0.0.0/0", "203.0.113.9", true), ("0.0.0.0/0", "::1", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true), ("10.0.0.0/8", "::ffff:11.1.2.3", false),
            ("::1/128", "::1", true), ("::1/128", "::2", false), ("::1/128", "127.0.0.1", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true), ("2001:db8::/32", "2001:db9::1", false),
            ("2001:db8::/33", "2001:db8:7fff::1", true), ("2001:db8::/33", "2001:db8:8000::1", false),
            ("fe80::/10", "fe80::1%eth0", true), ("fe80::/10", "febf:ffff::1", true), ("fe80::/10", "fec0::1", false),
            ("::/0", "2001:db8::1", true), ("::/0", "10.0.0.1", true),
            ("2001:db8::8:800:200c:417a/128", "2001:DB8:0:0:8:800:200C:417A", true),
            ("::ffff:0:0/96", "10.9.8.7", true),
            ("10.0.0.0/8", "?", false), ("10.0.0.0/8", "", false), ("10.0.0.0/8", "10.0.0", false),
            ("::/0", "not-an-ip", false),
        ]
        for (block, host, expected) in cases {
            let lane = try await Self.lane(match: #"{"cidr":"\#(block)"}"#, host: host)
            #expect(lane == (expected ? "gray" : ""), "\(block) vs \(host)")
        }
        // A list: any block may hold.
        #expect(try await Self.lane(match: #"{"cidr":["10.0.0.0/8","::1/128"]}"#, host: "::1") == "gray")
        #expect(try await Self.lane(match: #"{"cidr":["10.0.0.0/8","::1/128"]}"#, host: "172.16.0.1") == "")
    }

    // MARK: combinations and order

    @Test("all keys of one match must hold; an empty match matches everything")
    func combinations() async throws {
        let m = #"{"pilePrefix":"3201","pileType":"dc","protocolVersion":16,"firmware":"V1.*","carrier":"china_mobile","networkType":"lan","cidr":"10.0.0.0/8","percent":100}"#
        #expect(try await Self.lane(match: m) == "gray")
        #expect(try await Self.lane(match: m, host: "192.168.0.1") == "")
        #expect(try await Self.lane(match: m, Self.login(type: .ac)) == "")
        #expect(try await Self.lane(match: m, Self.login(version: 15)) == "")
        #expect(try await Self.lane(match: m, Self.login(firmware: "V2.0")) == "")
        #expect(try await Self.lane(match: m, Self.login(network: .wan)) == "")
        #expect(try await Self.lane(match: m, Self.login(carrier: .chinaTelecom)) == "")
        #expect(try await Self.lane(match: m, Self.login("42010600019236")) == "")
        #expect(try await Self.lane(match: #"{"pileType":"dc","percent":0}"#) == "")
        #expect(try await Self.lane(match: "{}") == "gray")
        #expect(try await Self.lane(match: "{}", host: "?") == "gray")
    }

    @Test("first match wins; no match is the base lane")
    func firstMatchWins() async throws {
        let t = try await Self.book(
            #"""
            [{"lane":"canary","match":{"piles":["32010600019236"]}},
             {"lane":"gray","match":{"pilePrefix":"3201"}},
             {"lane":"v15","match":{"protocolVersion":15}},
             {"lane":"catch.all-1","match":{"cidr":"10.0.0.0/8"}}]
            """#)
        defer { t.remove() }
        let b = t.book
        #expect(b.lane(for: Self.login("32010600019236"), remoteHost: "10.0.0.1") == "canary")
        #expect(b.lane(for: Self.login("32010600019237"), remoteHost: "10.0.0.1") == "gray")
        #expect(b.lane(for: Self.login("42010600019237", version: 15), remoteHost: "10.0.0.1") == "v15")
        #expect(b.lane(for: Self.login("42010600019237"), remoteHost: "10.0.0.1") == "catch.all-1")
        #expect(b.lane(for: Self.login("42010600019237"), remoteHost: "192.168.0.1") == "")
        #expect(b.rules.map(\.lane) == ["canary", "gray", "v15", "catch.all-1"])
    }

    @Test("replacing the rules takes effect at once, versions count up, ifVersion guards edits")
    func replaceAndVersion() async throws {
        let t = try TempBook()
        defer { t.remove() }
        let b = t.book
        #expect(b.version == 0 && b.updatedAt == nil && b.rules.isEmpty)
        #expect(b.lane(for: Self.login(), remoteHost: "10.0.0.1") == "")
        let d1 = try await b.replace(with: [LaneRule(lane: "gray", match: LaneMatch(pilePrefix: "3201"))])
        #expect(d1.version == 1 && b.version == 1 && b.updatedAt != nil)
        #expect(b.lane(for: Self.login(), remoteHost: "10.0.0.1") == "gray")
        try await b.replace(with: [LaneRule(lane: "blue", match: LaneMatch())], ifVersion: 1)
        #expect(b.version == 2)
        #expect(b.lane(for: Self.login(), remoteHost: "10.0.0.1") == "blue")
        await #expect(throws: LaneRuleVersionConflict(expected: 1, current: 2)) {
            try await b.replace(with: [], ifVersion: 1)
        }
        await #expect(throws: LaneRuleError.self) {
            try await b.replace(with: [LaneRule(lane: "", match: LaneMatch())])
        }
        #expect(b.version == 2 && b.lane(for: Self.login(), remoteHost: "10.0.0.1") == "blue")
        try await b.replace(with: [])
        #expect(b.version == 3 && b.lane(for: Self.login(), remoteHost: "10.0.0.1") == "")
    }

    @Test("concurrent replacements leave the newest committed version in force")
    func concurrentReplace() async throws {
        let t = try TempBook()
        defer { t.remove() }
        let b = t.book
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<20 {
                group.addTask { try await b.replace(with: [LaneRule(lane: "l\(i)", match: LaneMatch())]) }
            }
            try await group.waitForAll()
        }
        #expect(b.version == 20)
        // What is in force is what is stored.
        var logger = Logger(label: "lane-test")
        logger.logLevel = .critical
        let reread = try LaneRuleBook(database: t.registry.database, logger: logger)
        #expect(reread.version == 20 && reread.rules == b.rules)
    }

    // MARK: percent

    /// FNV-1a 32 over the id text, written independently of the implementation.
    static func referenceBucket(_ id: String) -> Int {
        var h: UInt32 = 2_166_136_261
        for byte in id.utf8 {
            h ^= UInt32(byte)
            h = h &* 16_777_619
        }
        return Int(h % 100)
    }

    @Test("percent is FNV-1a of the 14-digit id: the same in independent books, about N% of piles, nested as N grows")
    func stablePercent() async throws {
        let ids = (0..<10_000).map { String(32_010_600_000_000 + $0 * 7919) }
        for id in ids.prefix(500) {
            #expect(LaneRuleBook.percentBucket(of: PileID(id) ?? PileID(raw: 0)) == Self.referenceBucket(id))
        }
        #expect(LaneRuleBook.percentBucket(of: PileID("32010600019236") ?? PileID(raw: 0)) == Self.referenceBucket("32010600019236"))
        let a = try await Self.book(#"[{"lane":"p10","match":{"percent":10}},{"lane":"p30","match":{"percent":30}}]"#)
        let b = try await Self.book(#"[{"lane":"p10","match":{"percent":10}},{"lane":"p30","match":{"percent":30}}]"#)
        defer {
            a.remove()
            b.remove()
        }
        var counts: [String: Int] = [:]
        for id in ids {
            let la = a.book.lane(for: Self.login(id), remoteHost: "10.0.0.1")
            let lb = b.book.lane(for: Self.login(id), remoteHost: "10.0.0.1")
            #expect(la == lb)
            counts[la, default: 0] += 1
        }
        // 10% in p10, the next 20% in p30 (every p10 pile is also under 30), 70% base.
        #expect((800...1200).contains(counts["p10", default: 0]), "\(counts)")
        #expect((1750...2250).contains(counts["p30", default: 0]), "\(counts)")
        #expect((6600...7400).contains(counts["", default: 0]), "\(counts)")
        #expect(try await Self.lane(match: #"{"percent":100}"#) == "gray")
        #expect(try await Self.lane(match: #"{"percent":0}"#) == "")
    }

    // MARK: validation

    @Test("invalid lists are refused with the rule index and key")
    func validation() {
        let cases: [(String, String)] = [
            (#"[{"lane":"","match":{}}]"#, #"rules[0].lane: the base lane "" cannot be a rule target"#),
            (#"[{"lane":"a b","match":{}}]"#, "rules[0].lane: invalid lane 'a b'"),
            (#"[{"lane":"\#(String(repeating: "x", count: 65))","match":{}}]"#, "rules[0].lane: invalid lane"),
            (#"[{"lane":7,"match":{}}]"#, "rules[0].lane: expected a string"),
            (#"[{"match":{}}]"#, "rules[0].lane: missing"),
            (#"[{"lane":"g"}]"#, "rules[0].match: missing"),
            (#"[{"lane":"g","match":[]}]"#, "rules[0].match: expected an object"),
            (#"[{"lane":"g","match":{},"extra":1}]"#, "rules[0].extra: unknown key"),
            (#"[{"lane":"g","match":{}},{"lane":"g","match":{"colour":"red"}}]"#, "rules[1].match.colour: unknown match key"),
            (#"[{"lane":"g","match":{"percent":101}}]"#, "rules[0].match.percent: 101 is out of range 0...100"),
            (#"[{"lane":"g","match":{"percent":-1}}]"#, "rules[0].match.percent: -1 is out of range"),
            (#"[{"lane":"g","match":{"percent":"10"}}]"#, "rules[0].match.percent: expected an integer"),
            (#"[{"lane":"g","match":{"percent":12.5}}]"#, "rules[0].match.percent: expected an integer"),
            (#"[{"lane":"g","match":{"pileType":"xx"}}]"#, "rules[0].match.pileType: unknown value 'xx'"),
            (#"[{"lane":"g","match":{"pileType":true}}]"#, "rules[0].match.pileType: expected one of ac, dc"),
            (#"[{"lane":"g","match":{"protocolVersion":300}}]"#, "rules[0].match.protocolVersion: 300 is out of range"),
            (#"[{"lane":"g","match":{"protocolVersion":"16"}}]"#, "rules[0].match.protocolVersion: expected an integer"),
            (#"[{"lane":"g","match":{"carrier":"vodafone"}}]"#, "rules[0].match.carrier: unknown value 'vodafone'"),
            (#"[{"lane":"g","match":{"carrier":256}}]"#, "rules[0].match.carrier: expected one of"),
            (#"[{"lane":"g","match":{"networkType":"5g"}}]"#, "rules[0].match.networkType: unknown value '5g'"),
            (#"[{"lane":"g","match":{"piles":"32010600019236"}}]"#, "rules[0].match.piles: expected a list"),
            (#"[{"lane":"g","match":{"piles":["1","abc"]}}]"#, "rules[0].match.piles[1]: invalid pile id"),
            (#"[{"lane":"g","match":{"piles":[32010600019236]}}]"#, "rules[0].match.piles[0]: invalid pile id"),
            (#"[{"lane":"g","match":{"piles":["123456789012345"]}}]"#, "rules[0].match.piles[0]: invalid pile id"),
            (#"[{"lane":"g","match":{"pilePrefix":"32a"}}]"#, "rules[0].match.pilePrefix: invalid prefix '32a'"),
            (#"[{"lane":"g","match":{"pilePrefix":""}}]"#, "rules[0].match.pilePrefix: invalid prefix ''"),
            (#"[{"lane":"g","match":{"pilePrefix":"123456789012345"}}]"#, "rules[0].match.pilePrefix: invalid prefix"),
            (#"[{"lane":"g","match":{"pilePrefix":3201}}]"#, "rules[0].match.pilePrefix: expected a string"),
            (#"[{"lane":"g","match":{"firmware":""}}]"#, "rules[0].match.firmware: invalid glob ''"),
            (#"[{"lane":"g","match":{"firmware":"V[12]*"}}]"#, "rules[0].match.firmware: invalid glob 'V[12]*'"),
            (#"[{"lane":"g","match":{"firmware":"V1\\*"}}]"#, "rules[0].match.firmware: invalid glob"),
            (#"[{"lane":"g","match":{"firmware":"é*"}}]"#, "rules[0].match.firmware: invalid glob"),
            (#"[{"lane":"g","match":{"cidr":[]}}]"#, "rules[0].match.cidr: empty list"),
            (#"[{"lane":"g","match":{"cidr":8}}]"#, "rules[0].match.cidr: expected a CIDR string"),
            (#"[{"lane":"g","match":{"cidr":["10.0.0.0/8",8]}}]"#, "rules[0].match.cidr[1]: expected a CIDR string"),
        ]
        for (rules, expected) in cases {
            let message = Self.error(rules)
            #expect(message?.hasPrefix(expected) == true, "\(rules) → \(message ?? "accepted")")
        }
    }

    @Test("bad CIDRs are refused naming the rule, key and block")
    func invalidCIDR() {
        let bad = [
            "10.0.0/33", "10.0.0.0/33", "10.0.0.1/8", "10.0.0.256/32", "10.0.0.0/", "/8", "10.0.0.0/8/8", "10.0.0.0/-1",
            "10.0.0.0/ 8", "010.0.0.0.0/8", "::1/129", "1:2:3:4:5:6:7:8:9/128", "1::2::3/128", ":::/0", "12345::/16",
            "fe80::1%eth0/128", "abc", "", "1.2.3.4.5", "::1/1", "10.1/16",
        ]
        for block in bad {
            let message = Self.error(
                #"[{"lane":"a","match":{}},{"lane":"b","match":{}},{"lane":"g","match":{"cidr":"\#(block)"}}]"#)
            #expect(message?.hasPrefix("rules[2].match.cidr: invalid CIDR '\(block)'") == true, "\(block) → \(message ?? "accepted")")
        }
        #expect(
            Self.error(#"[{"lane":"g","match":{"cidr":["10.0.0.0/8","::1/129"]}}]"#)?
                .hasPrefix("rules[0].match.cidr[1]: invalid CIDR '::1/129'") == true)
        for good in ["0.0.0.0/0", "::/0", "::1/128", "10.0.0.0/8", "2001:db8::/32", "::ffff:10.0.0.0/104", "1:2:3:4:5:6:7:8/128"] {
            #expect(Self.error(#"[{"lane":"g","match":{"cidr":"\#(good)"}}]"#) == nil, "\(good)")
        }
    }

    @Test("limits: rule count and pile-list size")
    func limits() {
        let rule = #"{"lane":"g","match":{}}"#
        let tooMany = "[" + Array(repeating: rule, count: LaneRuleBook.maxRules + 1).joined(separator: ",") + "]"
        #expect(Self.error(tooMany)?.hasPrefix("rules: 1001 rules exceed the limit of 1000") == true)
        let enough = "[" + Array(repeating: rule, count: LaneRuleBook.maxRules).joined(separator: ",") + "]"
        #expect(Self.error(enough) == nil)
        let piles = (0...LaneRuleBook.maxPilesPerRule).map { PileID(raw: UInt64($0)) }
        #expect(throws: LaneRuleError.self) {
            try LaneRuleBook.validate([LaneRule(lane: "g", match: LaneMatch(piles: piles))])
        }
    }

    @Test("rules built in code are validated too")
    func codeBuiltRules() {
        #expect(throws: LaneRuleError(path: "rules[1].match.cidr", message: "invalid CIDR 'x': 'x' is not an IPv4 or IPv6 address")) {
            try LaneRuleBook.validate([
                LaneRule(lane: "ok", match: LaneMatch()), LaneRule(lane: "g", match: LaneMatch(cidr: ["x"])),
            ])
        }
        #expect(throws: LaneRuleError.self) { try LaneRuleBook.validate([LaneRule(lane: "g", match: LaneMatch(percent: 200))]) }
        #expect(throws: LaneRuleError.self) { try LaneRuleBook.validate([LaneRule(lane: "g", match: LaneMatch(pilePrefix: "x"))]) }
    }

    // MARK: persistence

    @Test("rules, version and time survive reopening the database")
    func persistence() async throws {
        let first = try TempBook()
        defer { first.remove() }
        let rules = try Self.parse(
            #"""
            [{"lane":"gray","match":{"piles":["32010600019236"],"cidr":["10.0.0.0/8","::1/128"],"carrier":7}},
             {"lane":"v15","match":{"protocolVersion":15,"firmware":"V1.*","pileType":"ac","networkType":"wan","percent":50,"pilePrefix":"32"}}]
            """#)
        let stored = try await first.book.replace(with: rules)
        try await first.book.replace(with: rules)
        let before = first.book.document
        #expect(before.version == 2 && stored.rules == rules)

        let second = try TempBook(directory: first.directory)
        let after = second.book.document
        #expect(after.rules == rules)
        #expect(after.version == 2)
        #expect(abs((after.updatedAt ?? .distantPast).timeIntervalSince(before.updatedAt ?? .distantFuture)) < 0.001)
        #expect(second.book.lane(for: Self.login(carrier: .unrecognized(7)), remoteHost: "::1") == "gray")
        #expect(second.book.lane(for: Self.login(carrier: .chinaMobile), remoteHost: "::1") == "")
        try await second.book.replace(with: [])
        #expect(try TempBook(directory: first.directory).book.version == 3)
    }

    @Test("the stored and shown form is canonical JSON that parses back to the same rules")
    func roundTrip() throws {
        let rules = try Self.parse(
            #"[{"lane":"g","match":{"piles":["1"],"carrier":0,"networkType":3,"pileType":1,"cidr":"::1"}}]"#)
        let json = JSONValue.array(rules.map(\.json))
        #expect(
            json.description
                == #"[{"lane":"g","match":{"carrier":"china_mobile","cidr":"::1","networkType":"other","pileType":"ac","piles":["00000000000001"]}}]"#
        )
        #expect(try Self.parse(json.description) == rules)
    }

    // MARK: HTTP

    @Test("GET and PUT /v1/lanes against a running gateway")
    func routes() async throws {
        let t = try TempBook()
        defer { t.remove() }
        try await withGateway(routes: [{ t.book.routes }]) { gw in
            let empty = try await gw.http("GET", "/v1/lanes")
            #expect(empty.status == 200)
            #expect((empty.object["rules"] as? [Any])?.isEmpty == true)
            #expect(empty.object["version"] as? Int == 0)
            #expect(empty.object["updatedAt"] is NSNull)

            let body = #"{"rules":[{"lane":"gray","match":{"pilePrefix":"3201","percent":100}},{"lane":"lab","match":{"cidr":"127.0.0.0/24"}}]}"#
            let put = try await gw.http("PUT", "/v1/lanes", body: body)
            #expect(put.status == 200, "\(put.body)")
            #expect(put.object["version"] as? Int == 1)
            #expect(put.object["updatedAt"] is String)
            let rules = put.object["rules"] as? [[String: Any]] ?? []
            #expect(rules.map { $0["lane"] as? String } == ["gray", "lab"])
            #expect((rules.first?["match"] as? [String: Any])?["pilePrefix"] as? String == "3201")
            #expect(t.book.lane(for: Self.login(), remoteHost: "8.8.8.8") == "gray")
            #expect(t.book.lane(for: Self.login("42010600019236"), remoteHost: "127.0.0.9") == "lab")

            let got = try await gw.http("GET", "/v1/lanes")
            #expect(got.status == 200 && got.body == put.body)

            let bad = try await gw.http(
                "PUT", "/v1/lanes",
                body: #"{"rules":[{"lane":"a","match":{}},{"lane":"b","match":{}},{"lane":"c","match":{"cidr":"10.0.0/33"}}]}"#)
            #expect(bad.status == 400)
            #expect(bad.object["error"] as? String == "invalid_rules")
            #expect((bad.object["message"] as? String)?.hasPrefix("rules[2].match.cidr: invalid CIDR '10.0.0/33'") == true, "\(bad.body)")

            let malformed = try await gw.http("PUT", "/v1/lanes", body: #"{"rules":[{"lane":"#)
            #expect(malformed.status == 400)
            #expect(malformed.object["error"] as? String == "invalid_json")
            let notObject = try await gw.http("PUT", "/v1/lanes", body: "[]")
            #expect(notObject.status == 400 && notObject.object["error"] as? String == "invalid_rules")
            let noRules = try await gw.http("PUT", "/v1/lanes", body: "{}")
            #expect(noRules.status == 400 && (noRules.object["message"] as? String)?.hasPrefix("rules: missing") == true)

            let stale = try await gw.http("PUT", "/v1/lanes", body: #"{"version":0,"rules":[]}"#)
            #expect(stale.status == 409 && stale.object["error"] as? String == "version_conflict")

            // Nothing changed through the failures.
            let still = try await gw.http("GET", "/v1/lanes")
            #expect(still.body == put.body)

            // A GET result sent back with its version applies (read-modify-write).
            let again = try await gw.http("PUT", "/v1/lanes", body: #"{"version":1,"updatedAt":"x","rules":[]}"#)
            #expect(again.status == 200 && again.object["version"] as? Int == 2)
            #expect(t.book.lane(for: Self.login(), remoteHost: "8.8.8.8") == "")
        }
    }

    /// Hands lane decisions to a rule book and everything else to `NoBackendSink`, the way the
    /// backend hub will.
    struct RuleBookSink: GatewayEventSink {
        let book: LaneRuleBook
        let base = NoBackendSink()
        func sessionOnline(_ session: PileSessionInfo) {}
        func sessionOffline(_ session: PileSessionInfo, reason: OfflineReason) {}
        func frameReceived(_ message: YKCMessage, frame: YKCFrame, session: PileSessionInfo, receivedAt: Date) {}
        func wants(code: UInt8) -> Bool { false }
        func request(
            _ message: YKCMessage, frame: YKCFrame, session: PileSessionInfo, receivedAt: Date,
            respond: EventLoopPromise<YKCMessage?>
        ) { respond.succeed(nil) }
        func lane(for login: Login, remoteHost: String) -> String { book.lane(for: login, remoteHost: remoteHost) }
        func decideLogin(_ login: Login, remoteAddress: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool?> {
            base.decideLogin(login, remoteAddress: remoteAddress, on: eventLoop)
        }
    }

    @Test("a rule put over HTTP decides the lane of the next login without a restart")
    func endToEnd() async throws {
        let t = try TempBook()
        defer { t.remove() }
        try await withGateway(sink: RuleBookSink(book: t.book), routes: [{ t.book.routes }]) { gw in
            let first = try await gw.pile("32010600019701")
            try await first.waitForLogin()
            #expect(try await Self.sessionLane(gw, "32010600019701") == "")

            let put = try await gw.http(
                "PUT", "/v1/lanes", body: #"{"rules":[{"lane":"gray","match":{"piles":["32010600019702"],"cidr":"127.0.0.0/8"}}]}"#)
            #expect(put.status == 200)
            let second = try await gw.pile("32010600019702")
            try await second.waitForLogin()
            #expect(try await Self.sessionLane(gw, "32010600019702") == "gray")
            // Sessions already online keep their lane.
            #expect(try await Self.sessionLane(gw, "32010600019701") == "")
            await first.stop()
            await second.stop()
        }
    }

    static func sessionLane(_ gw: TestGateway, _ id: String) async throws -> String? {
        let r = try await gw.http("GET", "/v1/piles/\(id)")
        return (r.object["session"] as? [String: Any])?["lane"] as? String
    }
}
