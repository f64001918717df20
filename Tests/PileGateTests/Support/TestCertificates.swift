import Foundation

/// A CA, a server certificate for 127.0.0.1, client certificates and a rogue CA's client
/// certificate, made with the `openssl` command line in a temporary directory.
struct TestCertificates {
    let directory: String
    /// The `-newkey` arguments of every key made.
    var newKey = ["rsa:2048"]
    var caCert: String { directory + "/ca.pem" }
    var serverCert: String { directory + "/server.pem" }
    var serverKey: String { directory + "/server.key" }

    func client(_ name: String) -> (cert: String, key: String) { (directory + "/\(name).pem", directory + "/\(name).key") }

    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    /// Makes `ca`, `server` (CN and SAN 127.0.0.1) and one client per entry of `clients`, signed
    /// by the CA; `rogue` is signed by a CA the gateway does not trust. `servers` names further
    /// server certificates from the same CA (CN = the name, SAN 127.0.0.1), for rotation tests.
    /// `ellipticCurve` makes P-256 keys instead of RSA 2048: much faster to generate on a loaded machine.
    static func make(clients: [String], servers: [String] = [], ellipticCurve: Bool = false) throws -> TestCertificates {
        let dir = NSTemporaryDirectory() + "pilegate-certs-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let certs = TestCertificates(directory: dir, newKey: ellipticCurve ? ["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] : ["rsa:2048"])
        try certs.openssl(["req", "-x509", "-newkey"] + certs.newKey + ["-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=pilegate-test-ca"])
        try certs.openssl(["req", "-x509", "-newkey"] + certs.newKey + ["-nodes", "-keyout", "rogue-ca.key", "-out", "rogue-ca.pem", "-days", "2", "-subj", "/CN=rogue-ca"])
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(toFile: dir + "/server.ext", atomically: true, encoding: .utf8)
        try certs.issue("server", cn: "127.0.0.1", ca: "ca", extensions: "server.ext")
        for s in servers { try certs.issue(s, cn: s, ca: "ca", extensions: "server.ext") }
        for c in clients { try certs.issue(c, cn: c, ca: "ca", extensions: nil) }
        try certs.issue("rogue", cn: "billing", ca: "rogue-ca", extensions: nil)
        return certs
    }

    private func issue(_ name: String, cn: String, ca: String, extensions: String?) throws {
        try openssl(["req", "-newkey"] + newKey + ["-nodes", "-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(cn)"])
        var args = ["x509", "-req", "-in", "\(name).csr", "-CA", "\(ca).pem", "-CAkey", "\(ca).key", "-CAcreateserial", "-out", "\(name).pem", "-days", "2"]
        if let extensions { args += ["-extfile", extensions] }
        try openssl(args)
    }

    private func openssl(_ arguments: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = arguments
        p.currentDirectoryURL = URL(fileURLWithPath: directory)
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw Failed(description: "openssl \(arguments.joined(separator: " ")): \(String(decoding: text, as: UTF8.self))")
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}
