import Foundation
import NIOCore
import YKC

/// Where sessions report what happens, and how they ask for business decisions.
///
/// This is the seam between the pile side and whatever carries events to backends: the embedded
/// WebSocket hub today, a message system (NATS) later. Calls come from pile event loops and must
/// not block; implementations hand work off.
public protocol GatewayEventSink: Sendable {
    /// A session logged in.
    func sessionOnline(_ session: PileSessionInfo)
    /// A logged-in session ended.
    func sessionOffline(_ session: PileSessionInfo, reason: OfflineReason)
    /// A frame arrived on a logged-in session and needs no business reply from the gateway's
    /// point of view (reports, replies to commands, heartbeats when subscribed).
    func frameReceived(_ message: YKCMessage, frame: YKCFrame, session: PileSessionInfo, receivedAt: Date)
    /// Whether anyone wants events of this frame code (lets the hot path skip work).
    func wants(code: UInt8) -> Bool
    /// A pile request that needs a business answer (0x05, 0x09, 0x31, 0xA1, 0x3B, …). The sink
    /// completes `respond` with the reply message (or nil to apply the gateway's fallback).
    func request(
        _ message: YKCMessage, frame: YKCFrame, session: PileSessionInfo, receivedAt: Date,
        respond: EventLoopPromise<YKCMessage?>)
    /// Decides the lane of a session at login ("" = base).
    func lane(for login: Login, remoteHost: String) -> String
    /// Changes whenever the lane rules change; an idle session re-decides its lane when it moves.
    var laneRulesVersion: Int { get }
    /// Under the `backend` login policy: accept or refuse; nil = no answer (fallback applies).
    func decideLogin(_ login: Login, remoteAddress: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool?>
    /// Cluster mode: called before an accepted login completes; a future to wait for while
    /// another node closes the pile's old session (`ClusterTakeover`), nil when there is none.
    func takeOver(_ pile: PileID, on eventLoop: any EventLoop) -> EventLoopFuture<Void>?
}

/// The sink used when no backend hub is attached: no events, no lanes, fallbacks everywhere.
public struct NoBackendSink: GatewayEventSink {
    public init() {}
    public func sessionOnline(_ session: PileSessionInfo) {}
    public func sessionOffline(_ session: PileSessionInfo, reason: OfflineReason) {}
    public func frameReceived(_ message: YKCMessage, frame: YKCFrame, session: PileSessionInfo, receivedAt: Date) {}
    public func wants(code: UInt8) -> Bool { false }
    public func request(
        _ message: YKCMessage, frame: YKCFrame, session: PileSessionInfo, receivedAt: Date,
        respond: EventLoopPromise<YKCMessage?>
    ) {
        respond.succeed(nil)
    }
    public func lane(for login: Login, remoteHost: String) -> String { "" }
    public var laneRulesVersion: Int { 0 }
    public func decideLogin(_ login: Login, remoteAddress: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool?> {
        eventLoop.makeSucceededFuture(nil)
    }
}

extension GatewayEventSink {
    /// Sinks without changing lane rules never move a session.
    public var laneRulesVersion: Int { 0 }
    /// Outside cluster mode no other node holds a pile.
    public func takeOver(_ pile: PileID, on eventLoop: any EventLoop) -> EventLoopFuture<Void>? { nil }
}
