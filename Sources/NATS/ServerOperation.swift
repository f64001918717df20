/// One thing the server sent, as the decoder frames it.
enum ServerOperation: Sendable, Equatable {
    case info(ServerInfo)
    case message(NATSMessage)
    case ping
    case pong
    case ok
    /// `-ERR 'text'`, with the quotes removed.
    case error(String)
}
