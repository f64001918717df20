extension PileID {
    /// The one rule for a pile id given as text by a person or a backend: API paths, query
    /// parameters and command bodies, lane rules, ban keys, the backend's JSON, the CLI.
    ///
    /// 1–14 decimal digits, left-padded with zeros ("1" is pile 00000000000001), or exactly 14 hex
    /// digits for the piles whose BCD id holds letters (docs/ykc/PROTOCOL-FACTS.md §1.4). A
    /// shorter id with a letter is refused: "ABC" is more likely a mistake than pile 00000000000ABC.
    /// `PileID.init(_:)` stays lenient for what the gateway itself stored.
    public init?(input text: some StringProtocol) {
        let count = text.utf8.count
        let decimal = count >= 1 && count <= 14 && text.utf8.allSatisfy { $0 >= 48 && $0 <= 57 }
        guard decimal || count == 14 else { return nil }
        self.init(text)
    }

    /// The rule of `init(input:)` in words, for error messages.
    public static let inputRule = "1-14 decimal digits or 14 hex digits"
}
