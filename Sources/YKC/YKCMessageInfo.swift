/// What the catalogue knows about a frame type without decoding one.
public struct YKCMessageInfo: Sendable, Hashable {
    public var code: UInt8
    /// snake_case event name.
    public var name: String
    /// The vendor document's Chinese title.
    public var title: String
    public var direction: YKCDirection
    /// The fixed body length, or nil for variable-size frames.
    public var bodyLength: Int?
    /// The code of the frame that answers this one.
    public var repliedBy: UInt8?
    /// The code of the frame this one answers.
    public var replyTo: UInt8?

    public init(
        code: UInt8, name: String, title: String, direction: YKCDirection, bodyLength: Int?, repliedBy: UInt8?,
        replyTo: UInt8?
    ) {
        self.code = code
        self.name = name
        self.title = title
        self.direction = direction
        self.bodyLength = bodyLength
        self.repliedBy = repliedBy
        self.replyTo = replyTo
    }

    private static let byCode: [UInt8: YKCMessageInfo] = Dictionary(
        uniqueKeysWithValues: YKCMessage.catalogue.map { ($0.code, $0) })
    private static let byName: [String: YKCMessageInfo] = Dictionary(
        uniqueKeysWithValues: YKCMessage.catalogue.map { ($0.name, $0) })

    public static func of(code: UInt8) -> YKCMessageInfo? { byCode[code] }
    public static func of(name: String) -> YKCMessageInfo? { byName[name] }
}
