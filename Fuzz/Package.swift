// swift-tools-version:6.0
import Foundation
import PackageDescription

// SwiftPM names a path dependency after its directory; the checkout may not be called "pilegate".
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let rootPackage = root.lastPathComponent.lowercased()

/// libFuzzer target for the YKC codec. A nested package so `swift build`/`swift test` at the root
/// never builds it. Build and run with `scripts/fuzz.sh SECONDS` (needs `-sanitize=fuzzer`).
let package = Package(
    name: "pilegate-fuzz",
    dependencies: [
        .package(path: "../"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .target(name: "CLibFuzzer"),
        .executableTarget(
            name: "YKCFuzz",
            dependencies: [
                "CLibFuzzer",
                .product(name: "YKC", package: rootPackage),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
