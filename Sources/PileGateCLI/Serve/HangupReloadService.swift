import PileGate
import ServiceLifecycle
import UnixSignals

/// SIGHUP reads the configuration again and applies what can change live
/// (`Gateway.reloadConfiguration`; the gateway logs the outcome), for the process's whole life:
/// the first service of `pilegate serve`'s group, so the last to stop, after the drain.
struct HangupReloadService: Service {
    let gateway: Gateway

    func run() async {
        let gateway = self.gateway
        await cancelWhenGracefulShutdown {
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                _ = try? gateway.reloadConfiguration()
            }
        }
    }
}
