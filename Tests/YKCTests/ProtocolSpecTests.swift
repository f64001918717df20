import Foundation
import NIOCore
import Testing

@testable import YKC

// An interpreter of protocol-specs/ykc-v1.6.json written independently of the generator: it reads
// the spec as plain data, builds random bodies, reads every field at the spec's offset and size,
// and compares with what the generated codec decodes, prints as JSON and encodes.

/// One field of the spec (or of a group item).
struct SpecField: Sendable {
    var name: String
    var offset: Int?
    var size: Int?
    var encoding: String
    var enumName: String?
    var scale = 0
    var add: Int64 = 0
    var reversed = false
    var bits: [(name: String, bit: Int, width: Int)] = []
    /// `count` / `length`: the field they count.
    var of: String?
    /// `asciiVariable`: the field that holds its byte count.
    var lengthField: String?
    /// `group`: a count field name or "rest".
    var count: String?
    var itemSize = 0
    var maxItems: Int?
    var fields: [SpecField] = []

    init(_ d: [String: Any]) {
        name = d["name"] as? String ?? ""
        offset = d["offset"] as? Int
        size = d["size"] as? Int
        encoding = d["encoding"] as? String ?? ""
        enumName = d["enum"] as? String
        scale = d["scale"] as? Int ?? 0
        add = Int64(d["add"] as? Int ?? 0)
        reversed = d["reversed"] as? Bool ?? false
        bits = (d["bits"] as? [[String: Any]] ?? []).map {
            ($0["name"] as? String ?? "", $0["bit"] as? Int ?? 0, $0["width"] as? Int ?? 1)
        }
        of = d["of"] as? String
        lengthField = d["lengthField"] as? String
        count = d["count"] as? String
        itemSize = d["itemSize"] as? Int ?? 0
        maxItems = d["maxItems"] as? Int
        fields = (d["fields"] as? [[String: Any]] ?? []).map(SpecField.init)
    }

    /// Fields that are derived on encode and absent from JSON.
    var isDerived: Bool { encoding == "count" || encoding == "length" }
}

/// One frame type of the spec.
struct SpecFrame: Sendable, CustomTestStringConvertible {
    var code: UInt8
    var name: String
    var title: String
    var direction: String
    var fixedLength: Int?
    var variableBase: Int?
    var repliedBy: UInt8?
    var replyTo: UInt8?
    var fields: [SpecField]
    var testDescription: String { "0x\(hexByte(code)) \(name)" }

    init(_ d: [String: Any]) {
        func code(_ s: Any?) -> UInt8? {
            guard let s = s as? String, s.hasPrefix("0x") else { return nil }
            return UInt8(s.dropFirst(2), radix: 16)
        }
        self.code = code(d["code"]) ?? 0
        name = d["name"] as? String ?? ""
        title = d["title"] as? String ?? ""
        direction = d["direction"] as? String ?? ""
        if let n = d["bodyLength"] as? Int {
            fixedLength = n
        } else if let v = d["bodyLength"] as? [String: Any] {
            variableBase = v["base"] as? Int
        }
        repliedBy = code(d["repliedBy"])
        replyTo = code(d["replyTo"])
        fields = (d["fields"] as? [[String: Any]] ?? []).map(SpecField.init)
    }

    /// A frame that names a shared layout takes its fields and body length from it, and its own
    /// `maxItems` caps the layout's group.
    init(resolving d: [String: Any], layouts: [String: [String: Any]]) {
        guard let name = d["layout"] as? String else {
            self.init(d)
            return
        }
        var merged = d
        if let layout = layouts[name] {
            merged["fields"] = layout["fields"]
            merged["bodyLength"] = layout["bodyLength"]
        }
        self.init(merged)
        if let cap = d["maxItems"] as? Int, let i = fields.firstIndex(where: { $0.encoding == "group" }) {
            fields[i].maxItems = cap
        }
    }
}

/// The spec document.
struct Spec: Sendable {
    var frames: [SpecFrame]
    /// enum name → value → case name.
    var enums: [String: [Int: String]]

    static let shared: Spec = load()

    static func load() -> Spec {
        let url = repositoryRoot.appendingPathComponent("protocol-specs/ykc-v1.6.json")
        guard let data = try? Data(contentsOf: url),
            let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        else { fatalError("cannot read \(url.path)") }
        let layouts = root["layouts"] as? [String: [String: Any]] ?? [:]
        let frames = (root["frames"] as? [[String: Any]] ?? []).map { SpecFrame(resolving: $0, layouts: layouts) }
        var enums: [String: [Int: String]] = [:]
        for (name, value) in root["enums"] as? [String: Any] ?? [:] {
            let cases = (value as? [String: Any])?["cases"] as? [[String: Any]] ?? []
            enums[name] = Dictionary(
                uniqueKeysWithValues: cases.compactMap { c in
                    (c["value"] as? Int).flatMap { v in (c["name"] as? String).map { (v, $0) } }
                })
        }
        return Spec(frames: frames, enums: enums)
    }
}

/// Builds random bodies that satisfy a frame's layout.
struct BodyBuilder {
    var rng: SeededRandom
    let spec: Spec

    mutating func body(for frame: SpecFrame) -> [UInt8] {
        var out: [UInt8] = []
        fill(frame.fields, into: &out, budget: 251)
        return out
    }

    /// Appends the fields in order (offsets in the spec are consecutive; checked elsewhere).
    private mutating func fill(_ fields: [SpecField], into out: inout [UInt8], budget: Int) {
        var counts: [String: Int] = [:]  // derived field name → value to patch
        var patchAt: [String: Int] = [:]
        for f in fields {
            switch f.encoding {
            case "count", "length":
                patchAt[f.of ?? ""] = out.count
                out.append(0)
            case "group":
                let fixedRest = 0
                let room = (budget - out.count - fixedRest) / max(f.itemSize, 1)
                let n = Int.random(in: 0...min(f.maxItems ?? room, room), using: &rng)
                for _ in 0..<n {
                    var item: [UInt8] = []
                    fill(f.fields, into: &item, budget: f.itemSize)
                    out += item
                }
                counts[f.name] = n
            case "asciiVariable":
                let n = Int.random(in: 0...min(budget - out.count, 242), using: &rng)
                out += printable(n)
                counts[f.name] = n
            default:
                out += value(for: f)
            }
        }
        for (name, at) in patchAt { out[at] = UInt8(counts[name] ?? 0) }
    }

    private mutating func printable(_ n: Int) -> [UInt8] {
        (0..<n).map { _ in UInt8.random(in: 0x20...0x7E, using: &rng) }
    }

    private mutating func value(for f: SpecField) -> [UInt8] {
        let size = f.size ?? 0
        switch f.encoding {
        case "gun":
            // Valid BCD, so the JSON form (a decimal number) round-trips; non-BCD bytes are covered
            // by a dedicated test.
            let n = Int.random(in: 0...99, using: &rng)
            return [UInt8(n / 10) << 4 | UInt8(n % 10)]
        case "enum", "enumList":
            return (0..<size).map { _ in
                let known = spec.enums[f.enumName ?? ""].map { Array($0.keys) } ?? []
                if !known.isEmpty && Bool.random(using: &rng) { return UInt8(known.randomElement(using: &rng) ?? 0) }
                return UInt8.random(in: 0...255, using: &rng)
            }
        case "ascii":
            let text = printable(Int.random(in: 0...size, using: &rng))
            let padded = text + [UInt8](repeating: 0, count: size - text.count)
            return f.reversed ? padded.reversed() : padded
        case "cp56":
            let ms = UInt16.random(in: 0...59_999, using: &rng)
            let month = Int.random(in: 1...12, using: &rng)
            let year = Int.random(in: 0...99, using: &rng)
            let day = Int.random(in: 1...28, using: &rng)
            return [
                UInt8(ms & 0xFF), UInt8(ms >> 8), UInt8.random(in: 0...59, using: &rng),
                UInt8.random(in: 0...23, using: &rng), UInt8(day), UInt8(month), UInt8(year),
            ]
        default:
            return rng.bytes(size)
        }
    }
}

/// Reads a field from body bytes the way the spec's `encodings` section describes, producing the
/// JSON value a decoder must print (as Foundation values, decimals as exact strings).
enum SpecReader {
    enum Expected: CustomStringConvertible {
        case string(String)
        case int(Int64)
        /// Exact decimal text with `scale` fraction digits.
        case decimal(String)
        case bool(Bool)
        case array([Expected])
        case object([(String, Expected)])

        var description: String {
            switch self {
            case .string(let s): "\"\(s)\""
            case .int(let i): String(i)
            case .decimal(let d): d
            case .bool(let b): String(b)
            case .array(let a): "[" + a.map(\.description).joined(separator: ",") + "]"
            case .object(let o): "{" + o.map { "\($0.0):\($0.1)" }.joined(separator: ",") + "}"
            }
        }
    }

    static func le(_ b: ArraySlice<UInt8>) -> UInt64 {
        b.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    static func hexText(_ b: ArraySlice<UInt8>) -> String {
        let digits = Array("0123456789ABCDEF")
        return String(b.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xF)]] })
    }

    static func decimalText(raw: UInt64, scale: Int, add: Int64) -> String {
        var p: Int64 = 1
        for _ in 0..<scale { p *= 10 }
        let units = Int64(raw) + add * p
        if scale == 0 { return String(units) }
        let mag = units.magnitude
        let frac = String(mag % UInt64(p))
        return (units < 0 ? "-" : "") + String(mag / UInt64(p)) + "."
            + String(repeating: "0", count: scale - frac.count) + frac
    }

    static func enumValue(_ byte: UInt8, _ name: String?, _ spec: Spec) -> Expected {
        if let n = spec.enums[name ?? ""]?[Int(byte)] { return .string(n) }
        return .int(Int64(byte))
    }

    static func cp56(_ b: ArraySlice<UInt8>) -> String {
        let a = Array(b)
        let ms = Int(a[0]) | Int(a[1]) << 8
        let minute = Int(a[2] & 0x3F), hour = Int(a[3] & 0x1F), day = Int(a[4] & 0x1F)
        let month = Int(a[5] & 0x0F), year = 2000 + Int(a[6] & 0x7F)
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
        let dim = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard (1...12).contains(month), day >= 1, day <= dim[month - 1], hour < 24, minute < 60, ms < 60_000 else {
            return hexText(b)
        }
        func pad(_ v: Int, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(hour, 2)):\(pad(minute, 2)):"
            + "\(pad(ms / 1000, 2)).\(pad(ms % 1000, 3))+08:00"
    }

    /// The JSON members of `fields` read from `body`; derived fields are left out.
    static func read(_ fields: [SpecField], _ body: [UInt8], base: Int = 0, spec: Spec) -> [(String, Expected)] {
        var out: [(String, Expected)] = []
        var derived: [String: Int] = [:]
        var cursor = base
        for f in fields {
            let start = base + (f.offset ?? (cursor - base))
            let size = f.size ?? 0
            let slice = body[start..<min(start + size, body.count)]
            cursor = start + size
            switch f.encoding {
            case "pileId", "tradeSerial", "bcd", "binaryId", "hex":
                out.append((f.name, .string(hexText(slice))))
            case "gun":
                let b = slice.first ?? 0
                let v = b >> 4 <= 9 && b & 0xF <= 9 ? Int64(b >> 4) * 10 + Int64(b & 0xF) : Int64(b)
                out.append((f.name, .int(v)))
            case "gunBinary":
                out.append((f.name, .int(Int64(slice.first ?? 0))))
            case "uint":
                if f.scale == 0 && f.add == 0 {
                    out.append((f.name, .int(Int64(le(slice)))))
                } else {
                    out.append((f.name, .decimal(decimalText(raw: le(slice), scale: f.scale, add: f.add))))
                }
            case "enum":
                out.append((f.name, enumValue(slice.first ?? 0, f.enumName, spec)))
            case "enumList":
                out.append((f.name, .array(slice.map { enumValue($0, f.enumName, spec) })))
            case "bits":
                let raw = le(slice)
                var members: [(String, Expected)] = [("raw", .int(Int64(raw)))]
                for b in f.bits {
                    let v = (raw >> UInt64(b.bit)) & ((1 << UInt64(b.width)) - 1)
                    members.append((b.name, b.width == 1 ? .bool(v != 0) : .int(Int64(v))))
                }
                out.append((f.name, .object(members)))
            case "ascii":
                var bytes = Array(slice)
                if f.reversed { bytes.reverse() }
                while bytes.last == 0 { bytes.removeLast() }
                out.append((f.name, .string(String(String.UnicodeScalarView(bytes.map { UnicodeScalar($0) })))))
            case "asciiVariable":
                let n = derived[f.name] ?? 0
                let bytes = body[start..<(start + n)]
                cursor = start + n
                out.append((f.name, .string(String(String.UnicodeScalarView(bytes.map { UnicodeScalar($0) })))))
            case "cp56":
                out.append((f.name, .string(cp56(slice))))
            case "count", "length":
                derived[f.of ?? ""] = Int(slice.first ?? 0)
            case "group":
                let n = f.count == "rest" ? (body.count - start) / f.itemSize : derived[f.name] ?? 0
                var items: [Expected] = []
                for i in 0..<n {
                    items.append(.object(read(f.fields, body, base: start + i * f.itemSize, spec: spec)))
                }
                cursor = start + n * f.itemSize
                out.append((f.name, .array(items)))
            default:
                Issue.record("unknown encoding \(f.encoding) in the spec")
            }
        }
        return out
    }

    /// Compares a Foundation JSON value with the expectation; returns a mismatch description.
    static func mismatch(_ actual: Any?, _ expected: Expected, path: String) -> String? {
        switch expected {
        case .string(let s):
            return (actual as? String) == s ? nil : "\(path): \(String(describing: actual)) != \"\(s)\""
        case .int(let i):
            guard let n = actual as? NSNumber, n.int64Value == i, n.doubleValue == Double(i) else {
                return "\(path): \(String(describing: actual)) != \(i)"
            }
            return nil
        case .decimal(let d):
            guard let n = actual as? NSNumber, let want = Double(d), n.doubleValue == want else {
                return "\(path): \(String(describing: actual)) != \(d)"
            }
            return nil
        case .bool(let b):
            return (actual as? Bool) == b ? nil : "\(path): \(String(describing: actual)) != \(b)"
        case .array(let items):
            guard let a = actual as? [Any], a.count == items.count else {
                return "\(path): array \(String(describing: actual)) has not \(items.count) items"
            }
            for (i, e) in items.enumerated() {
                if let m = mismatch(a[i], e, path: "\(path)[\(i)]") { return m }
            }
            return nil
        case .object(let members):
            guard let o = actual as? [String: Any] else { return "\(path): not an object" }
            let keys = Set(members.map(\.0))
            if Set(o.keys) != keys { return "\(path): keys \(o.keys.sorted()) != \(keys.sorted())" }
            for (k, e) in members {
                if let m = mismatch(o[k], e, path: "\(path).\(k)") { return m }
            }
            return nil
        }
    }

    /// Every decimal member as the literal `"name":text` that must appear in the JSON text
    /// (JSONSerialization yields doubles; this checks the exact digits).
    static func decimalLiterals(_ members: [(String, Expected)]) -> [String] {
        members.flatMap { (k, e) -> [String] in
            switch e {
            case .decimal(let d): ["\"\(k)\":\(d)"]
            case .object(let m): decimalLiterals(m)
            case .array(let a):
                a.flatMap { item -> [String] in
                    if case .object(let m) = item { return decimalLiterals(m) }
                    return []
                }
            default: []
            }
        }
    }
}

@Suite("Protocol spec (protocol-specs/ykc-v1.6.json) against the codec")
struct ProtocolSpecTests {
    static let spec = Spec.shared
    static let iterations = 40

    @Test("the spec is readable and its fixed layouts are contiguous and add up to bodyLength")
    func layoutsAreConsistent() {
        #expect(Self.spec.frames.count == 53)
        for frame in Self.spec.frames {
            var next = 0
            for f in frame.fields {
                #expect(f.offset == next, "\(frame.name).\(f.name) at \(String(describing: f.offset)), expected \(next)")
                guard let size = f.size else { next = -1; break }
                next += size
            }
            if let fixed = frame.fixedLength { #expect(next == fixed, "\(frame.name): fields end at \(next)") }
            if let base = frame.variableBase {
                #expect(frame.fields.last(where: { $0.offset != nil })?.offset == base, "\(frame.name): base")
            }
        }
    }

    @Test("the catalogue matches the spec: code, name, title, direction, body length, reply pairing")
    func catalogueMatchesSpec() {
        #expect(YKCMessage.catalogue.count == Self.spec.frames.count)
        for frame in Self.spec.frames {
            guard let info = YKCMessageInfo.of(code: frame.code) else {
                Issue.record("0x\(hexByte(frame.code)) missing from the catalogue")
                continue
            }
            #expect(info.name == frame.name)
            #expect(info.title == frame.title)
            #expect(info.direction.rawValue == frame.direction)
            #expect(info.bodyLength == frame.fixedLength)
            #expect(info.repliedBy == frame.repliedBy, "\(frame.name)")
            #expect(info.replyTo == frame.replyTo, "\(frame.name)")
            #expect(YKCMessageInfo.of(name: frame.name)?.code == frame.code)
            // Pile-originated codes are odd, platform-originated even (docs/ykc/PROTOCOL-FACTS.md §1).
            #expect((frame.code & 1 == 1) == (frame.direction == "pile_to_platform"))
        }
        // Reply pairing is symmetric.
        for info in YKCMessage.catalogue {
            if let r = info.repliedBy { #expect(YKCMessageInfo.of(code: r)?.replyTo == info.code, "\(info.name)") }
            if let r = info.replyTo { #expect(YKCMessageInfo.of(code: r)?.repliedBy == info.code, "\(info.name)") }
        }
    }

    @Test("random bodies decode to the typed message, print the spec's JSON and re-encode byte for byte",
          arguments: Spec.shared.frames)
    func randomBodies(_ frame: SpecFrame) throws {
        var builder = BodyBuilder(rng: SeededRandom(seed: 0x5EED_0000 + UInt64(frame.code)), spec: Self.spec)
        for iteration in 0..<Self.iterations {
            let body = builder.body(for: frame)
            let message = decode(frame.code, body)
            let context = "0x\(hexByte(frame.code)) iteration \(iteration) body \(hexString(body))"
            guard message.rawReason == nil else {
                Issue.record("decoded to raw \(String(describing: message.rawReason)): \(context)")
                return
            }
            #expect(message.code == frame.code)
            #expect(message.name == frame.name)

            let json = message.json
            let expected = SpecReader.read(frame.fields, body, spec: Self.spec)
            let actual = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any]
            if let m = SpecReader.mismatch(actual, .object(expected), path: frame.name) {
                Issue.record("\(m)\n\(context)\njson: \(json)")
                return
            }
            for literal in SpecReader.decimalLiterals(expected) {
                #expect(json.contains(literal), "\(literal) not in \(json)")
            }

            #expect(message.bodyBytes == body, "\(context)")
            var buffer = ByteBuffer()
            message.frame(sequence: YKCSequence(0x12, 0x34)).write(into: &buffer)
            #expect(Array(buffer.readableBytesView) == makeFrame(code: frame.code, body: body, sequence: YKCSequence(0x12, 0x34)))

            // JSON → message → bytes.
            do {
                let back = try YKCMessage.fromJSON(name: frame.name, JSONValue.parse(json))
                #expect(back.bodyBytes == body, "JSON round trip: \(context)\njson: \(json)")
                #expect(back == message)
            } catch {
                Issue.record("fromJSON failed: \(error)\n\(context)\njson: \(json)")
                return
            }
        }
    }

    @Test("a body of the wrong length decodes to .raw with lengthMismatch", arguments: Spec.shared.frames)
    func wrongLength(_ frame: SpecFrame) {
        var rng = SeededRandom(seed: UInt64(frame.code))
        var lengths: [Int] = []
        if let fixed = frame.fixedLength {
            lengths = [fixed - 1, fixed + 1, 0]
        } else if let base = frame.variableBase {
            lengths = [base - 1, 0]
            // A "rest" group of whole items only: one byte more is not a whole item.
            if let g = frame.fields.first(where: { $0.encoding == "group" }), g.count == "rest" {
                lengths.append(base + g.itemSize + 1)
            }
        }
        for n in lengths where n >= 0 {
            let message = decode(frame.code, rng.bytes(n))
            guard case .lengthMismatch = message.rawReason else {
                Issue.record("\(frame.name) with \(n) bytes: \(message.json)")
                continue
            }
            #expect(message.code == frame.code)
            #expect(message.name == "raw_frame")
        }
    }

    @Test("a count or length byte that disagrees with the body size gives .raw countMismatch",
          arguments: Spec.shared.frames.filter { f in f.fields.contains { $0.isDerived } })
    func countMismatch(_ frame: SpecFrame) throws {
        var builder = BodyBuilder(rng: SeededRandom(seed: 77), spec: Self.spec)
        var body = builder.body(for: frame)
        let at = try #require(frame.fields.first { $0.isDerived }?.offset)
        body[at] &+= 1
        guard case .countMismatch = decode(frame.code, body).rawReason else {
            Issue.record("\(frame.name): \(decode(frame.code, body).json)")
            return
        }
    }

    @Test("codes outside the catalogue decode to .raw unknownType, keeping the bytes")
    func unknownTypes() {
        let known = Set(Self.spec.frames.map(\.code))
        for code in UInt8.min...UInt8.max where !known.contains(code) {
            let body = [UInt8](repeating: code, count: Int(code) % 20)
            let message = decode(code, body)
            #expect(message.rawReason == .unknownType(code))
            #expect(message.code == code)
            #expect(message.bodyBytes == body)
        }
    }

    @Test("an encrypted frame decodes to .raw encrypted, whatever its type", arguments: [UInt8(0x01), 0x13, 0x3B, 0x77])
    func encrypted(_ code: UInt8) {
        let body = [UInt8](repeating: 0, count: YKCMessageInfo.of(code: code)?.bodyLength ?? 5)
        let frame = YKCFrame(sequence: YKCSequence(0, 1), encryption: 1, code: code, body: ByteBuffer(bytes: body))
        let message = YKCMessage.decode(frame)
        #expect(message.rawReason == .encrypted)
        #expect(message.json.contains(#""reason":"encrypted""#))
    }
}
