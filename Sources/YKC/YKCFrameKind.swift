/// The identity of one frame type whose body layout other frame types share.
///
/// Where the spec gives several frame types one layout (`layouts` in `protocol-specs/ykc-v1.6.json`,
/// e.g. 0x0A `billing_model_reply` and 0x58 `billing_model_set`), the generator writes that layout
/// once, as a struct generic over its `Frame`, and one `YKCFrameKind` per frame type that says which
/// frame it is. Each frame type keeps its own name as a typealias (`BillingModelSet` is
/// `BillingModel<BillingModelSetFrame>`), so a change to the layout reaches every frame that uses it.
public protocol YKCFrameKind: Sendable {
    static var code: UInt8 { get }
    /// snake_case name, the event type name backends subscribe to.
    static var name: String { get }
    static var direction: YKCDirection { get }
    /// The most items the layout's group may hold in this frame type, where the protocol caps it
    /// below what fits in a frame (0x46 clears at most 24 cards, 0x48 queries at most 26); nil
    /// when only the frame size limits it.
    static var maxItems: Int? { get }
}

extension YKCFrameKind {
    public static var maxItems: Int? { nil }
}
