import YKC

/// Which frames wait for an answer, read from the generated protocol catalogue
/// (`YKCMessage.catalogue`, written from `protocol-specs/ykc-v1.6.json`, where each reply names the
/// frame it answers with `replyTo`) instead of hand-written tables that could drift from the spec.
enum PileReplyCodes {
    /// Platform commands a pile answers: command code → the code of the pile's reply
    /// (docs/ykc/PROTOCOL-FACTS.md §5.7). A command without an entry expects no reply.
    static let commandReply: [UInt8: UInt8] = Dictionary(
        uniqueKeysWithValues: YKCMessage.catalogue.compactMap { info in
            guard info.direction == .platformToPile, let reply = info.repliedBy else { return nil }
            return (info.code, reply)
        })

    /// Pile requests that wait for a business answer from the platform: the pile frames the catalogue
    /// pairs with a platform reply, except the login and the heartbeat, which the session answers
    /// itself.
    static let pileRequests: Set<UInt8> = Set(
        YKCMessage.catalogue.compactMap { info in
            guard info.direction == .pileToPlatform, info.repliedBy != nil else { return nil }
            return info.code == Login.code || info.code == Heartbeat.code ? nil : info.code
        })
}
