/// A token request that cannot be honoured (bad name, scope, limit; a duplicate; an unknown
/// name), with a stable code for the API's `{"error","message"}` body.
public struct APITokenError: Error, CustomStringConvertible, Sendable, Equatable {
    public var code: String
    public var message: String
    public var description: String { message }

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }
}
