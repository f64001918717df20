import YKCCipher

/// A session's frame encryption (flag 0x01, docs/PROTOCOL.md "Encrypted frames"): the pile's key,
/// re-read when the key store's version moves, and whether frames to it are encrypted. Allocated
/// at the pile's first encrypted frame, in the session's `PileSessionSideState`; a pile that never
/// encrypts pays nothing for it.
final class PileEncryptionState {
    /// The pile's frame key, as of `cipherVersion` of the key store.
    var cipher: FrameCipher?
    var cipherVersion = -1
    /// Set once the pile has sent an encrypted frame: every frame to it is encrypted from then on.
    var encryptOutgoing = false
    /// The first encrypted-frame refusal on a connection logs a warning, later ones debug.
    var loggedRefusal = false
}
