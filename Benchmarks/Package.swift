// swift-tools-version:6.0
import Foundation
import PackageDescription

/// Codec benchmarks for pilegate. A nested package so CI's `swift build`/`swift test` never builds it;
/// run with `scripts/bench-codec.sh`.
///
/// SwiftPM names a path dependency after its directory; the checkout may not be called "pilegate".
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let rootPackage = root.lastPathComponent.lowercased()

let package = Package(
    name: "pilegate-benchmarks",
    dependencies: [
        .package(path: "../"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        /// Interposes malloc & co. in the benchmark executable and counts calls (glibc only).
        .target(name: "MallocCounter"),
        .executableTarget(
            name: "ykc-bench",
            dependencies: [
                "MallocCounter",
                .product(name: "YKC", package: rootPackage),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
