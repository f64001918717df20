import ArgumentParser
import Foundation

/// Options every admin verb shares.
struct APIOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The gateway's admin API (default \(AdminClient.defaultURL), or $PILEGATE_API).", valueName: "URL"))
    var api: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "A bearer token for an API that requires one (or $PILEGATE_TOKEN; prefer the variable: arguments show in ps).",
            valueName: "SECRET"))
    var token: String?

    @Option(name: .long, help: ArgumentHelp("CA bundle (PEM) to trust for an https API (or $PILEGATE_CACERT).", valueName: "FILE"))
    var cacert: String?

    @Option(name: .long, help: ArgumentHelp("Client certificate (PEM) for an API with mutual TLS (or $PILEGATE_CERT).", valueName: "FILE"))
    var cert: String?

    @Option(name: .long, help: ArgumentHelp("The client certificate's private key (PEM; or $PILEGATE_KEY).", valueName: "FILE"))
    var key: String?

    func client() throws -> AdminClient {
        let env = ProcessInfo.processInfo.environment
        let tls = TLSHTTPClient.Options(
            caFile: cacert ?? env["PILEGATE_CACERT"], certFile: cert ?? env["PILEGATE_CERT"], keyFile: key ?? env["PILEGATE_KEY"])
        return try AdminClient(
            api: api ?? env["PILEGATE_API"] ?? AdminClient.defaultURL, token: token ?? env["PILEGATE_TOKEN"], tls: tls)
    }
}
