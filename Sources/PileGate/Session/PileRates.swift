/// A pile's frame and byte rates (token buckets: `rate` a second up to `burst`). One shared object
/// serves every pile on the configured rates; a pile with its own limits (`PileLimitStore`) gets
/// its own at login. Sessions keep only their balances (`PileRateBuckets`), not eight numbers each.
final class PileRates: Sendable {
    let frameRate: Double
    let frameBurst: Double
    let byteRate: Double
    let byteBurst: Double

    init(frameRate: Double, frameBurst: Double, byteRate: Double, byteBurst: Double) {
        self.frameRate = frameRate
        self.frameBurst = frameBurst
        self.byteRate = byteRate
        self.byteBurst = byteBurst
    }

    convenience init(config c: GatewayConfiguration) {
        self.init(frameRate: c.frameRatePerSecond, frameBurst: c.frameBurst, byteRate: c.byteRatePerSecond, byteBurst: c.byteBurst)
    }
}
