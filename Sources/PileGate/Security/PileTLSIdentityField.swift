import NIOSSL

/// The subject field of a pile's client certificate that names its pile id
/// (`pileTLSIdentityField`): the common name by default; some fleets' PKI put the device id in
/// the organizational unit or the user id instead.
public enum PileTLSIdentityField: String, Sendable, Equatable, CaseIterable {
    case commonName = "CN"
    case organizationalUnit = "OU"
    case userId = "UID"

    var nameType: SSLCertificateNameType {
        switch self {
        case .commonName: .commonName
        case .organizationalUnit: .organizationalUnit
        case .userId: .userId
        }
    }

    /// The field's value in `certificate`'s subject, or nil when the subject has none.
    func value(in certificate: NIOSSLCertificate) -> String? {
        certificate.subjectName.first(where: { $0.type == nameType })?.value
    }
}
