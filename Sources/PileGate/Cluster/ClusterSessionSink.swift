import Foundation
import NIOCore
import YKC

/// The event sink of a node in cluster mode: the backend hub's, plus what the cluster needs to
/// know of sessions — logins and logouts go to the pile directory (queued, never waited for),
/// and a login of a pile held by another node waits for that node to close it
/// (`ClusterTakeover`).
struct ClusterSessionSink: GatewayEventSink {
    let inner: any GatewayEventSink
    let directory: ClusterPileDirectory
    let takeover: ClusterTakeover

    func sessionOnline(_ session: PileSessionInfo) {
        directory.sessionOnline(session)
        inner.sessionOnline(session)
    }

    func sessionOffline(_ session: PileSessionInfo, reason: OfflineReason) {
        directory.sessionOffline(session)
        inner.sessionOffline(session, reason: reason)
    }

    func takeOver(_ pile: PileID, on eventLoop: any EventLoop) -> EventLoopFuture<Void>? {
        takeover.takeOver(pile, on: eventLoop)
    }

    func frameReceived(_ message: YKCMessage, frame: YKCFrame, session: PileSessionInfo, receivedAt: Date) {
        inner.frameReceived(message, frame: frame, session: session, receivedAt: receivedAt)
    }

    func wants(code: UInt8) -> Bool { inner.wants(code: code) }

    func request(
        _ message: YKCMessage, frame: YKCFrame, session: PileSessionInfo, receivedAt: Date, respond: EventLoopPromise<YKCMessage?>
    ) {
        inner.request(message, frame: frame, session: session, receivedAt: receivedAt, respond: respond)
    }

    func lane(for login: Login, remoteHost: String) -> String { inner.lane(for: login, remoteHost: remoteHost) }

    var laneRulesVersion: Int { inner.laneRulesVersion }

    func decideLogin(_ login: Login, remoteAddress: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool?> {
        inner.decideLogin(login, remoteAddress: remoteAddress, on: eventLoop)
    }
}
