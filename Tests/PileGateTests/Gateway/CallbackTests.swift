import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import PileGate

/// `Callback`: why closures in lock boxes are wrapped (see its doc comment).
@Suite struct CallbackTests {
    /// The address of a local in a non-inlined function: deeper call chains put it lower.
    @inline(never) static func stackAddress() -> UInt {
        var marker = 0
        return withUnsafeMutablePointer(to: &marker) { UInt(bitPattern: $0) }
    }

    @Test("reading a wrapped closure from a lock box 1,000 times does not deepen its call")
    func readsDoNotWrap() {
        let box = NIOLockedValueBox<Callback<@Sendable () -> UInt>?>(Callback { Self.stackAddress() })
        let first = box.withLockedValue { $0 }?.call() ?? 0
        for _ in 0..<1_000 { _ = box.withLockedValue { $0 } }
        let later = box.withLockedValue { $0 }?.call() ?? 0
        #expect(first != 0)
        #expect(first == later)
    }

    @Test("no bare function type is kept as a lock box's value in Sources/")
    func noBareClosuresInBoxes() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../../Sources").standardizedFileURL
        let pattern = try Regex(#"NIOLockedValueBox<\((@Sendable )?\("#)
        var offenders: [String] = []
        let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)
        while let url = files?.nextObject() as? URL {
            guard url.pathExtension == "swift", let text = try? String(contentsOf: url, encoding: .utf8) else { continue }
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            where line.contains(pattern) && !line.trimmingCharacters(in: .whitespaces).hasPrefix("//") {
                offenders.append("\(url.lastPathComponent):\(n + 1)")
            }
        }
        #expect(offenders.isEmpty, "wrap these closures in Callback: \(offenders)")
        #expect(FileManager.default.fileExists(atPath: sources.appendingPathComponent("PileGate/Gateway/Callback.swift").path))
    }

    /// The behaviour `Callback` avoids, on this toolchain: each `inout` read of a bare closure wraps
    /// it in more thunks, so the same call runs deeper in the stack (lower addresses). This is
    /// also what shows the first test can fail.
    @Test("control: reading a bare closure from a lock box deepens its call")
    func control() {
        let box = NIOLockedValueBox<(@Sendable () -> UInt)?>({ Self.stackAddress() })
        let first = box.withLockedValue { $0 }?() ?? 0
        for _ in 0..<1_000 { _ = box.withLockedValue { $0 } }
        let later = box.withLockedValue { $0 }?() ?? 0
        #expect(later < first - 1_000, "1,000 reads should add at least a byte of stack each")
    }
}
