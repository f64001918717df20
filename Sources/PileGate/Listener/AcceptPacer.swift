import NIOCore

/// Paces accepts on the listening socket: each accepted connection takes a token, and when the
/// bucket is empty the listener stops reading (accepting) until it refills. The kernel backlog
/// holds the wave meanwhile.
final class AcceptPacer: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never

    private let admission: AdmissionControl
    private var paused = false
    private var pendingRead = false
    private var acceptedSinceCheck = 0

    init(admission: AdmissionControl) {
        self.admission = admission
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        acceptedSinceCheck += 1
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if acceptedSinceCheck > 0 {
            let delay = admission.acceptDelay(count: acceptedSinceCheck)
            acceptedSinceCheck = 0
            if delay > .zero && !paused {
                paused = true
                context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
                    paused = false
                    if pendingRead {
                        pendingRead = false
                        context.read()
                    }
                }
            }
        }
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if paused {
            pendingRead = true
        } else {
            context.read()
        }
    }
}
