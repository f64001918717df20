import Foundation
import YKC

/// A snapshot of what a session knows right now.
public struct PileLiveState: Sendable, Codable {
    public struct Gun: Sendable, Codable {
        public var gun: Int
        public var state: String
        public var lastHeartbeat: Date?
        public var status: String?
    }
    public var guns: [Gun]
    public var framesIn: Int
    public var framesOut: Int
    public var lastFrameAt: Date?
}
