import NIOCore
import YKC

extension FrameCipher {
    /// The encryption flag value of a frame whose body is 3DES-encrypted.
    public static let encryptedFlag: UInt8 = 0x01

    /// `frame` with its body decrypted and the encryption flag cleared, ready for
    /// `YKCMessage.decode`. Sequence, type and CRC information are kept.
    ///
    /// With zero padding, trailing zero bytes beyond a fixed-size type's body length (fewer than
    /// one block) are dropped: they can only be padding. Variable-size bodies keep them.
    public func decrypt(frame: YKCFrame) throws(FrameCipherError) -> YKCFrame {
        var plain = try decrypt(Array(frame.body.readableBytesView))
        if padding == .zero, let length = YKCMessageInfo.of(code: frame.code)?.bodyLength {
            plain = Self.trimmingZeroPadding(plain, to: length)
        }
        return YKCFrame(
            sequence: frame.sequence, encryption: 0, code: frame.code, body: ByteBuffer(bytes: plain),
            wireCRC: frame.wireCRC, crcOrder: frame.crcOrder)
    }

    /// `frame` with its body encrypted and the encryption flag set to 0x01.
    public func encrypt(frame: YKCFrame) throws(FrameCipherError) -> YKCFrame {
        let cipherText = try encrypt(Array(frame.body.readableBytesView))
        return YKCFrame(
            sequence: frame.sequence, encryption: Self.encryptedFlag, code: frame.code,
            body: ByteBuffer(bytes: cipherText))
    }

    /// Drops the zero padding after a body of known `length`; anything else is left as it is
    /// (the decoder then reports the length mismatch).
    static func trimmingZeroPadding(_ plain: [UInt8], to length: Int) -> [UInt8] {
        guard plain.count > length, plain.count - length < blockSize,
            plain[length...].allSatisfy({ $0 == 0 })
        else { return plain }
        return Array(plain[..<length])
    }
}
