// swift-tools-version:6.0
import PackageDescription

/// pilegate: a TCP gateway for EV charging piles speaking the YKC (云快充) protocol.
///
/// Targets, one job each (see docs/ARCHITECTURE in the README):
/// - `YKC`: the protocol alone (framing, CRC, field encodings, a typed value per frame, JSON form).
/// - `PileGate`: the gateway (listener, sessions, registry, limits, admin API, metrics, config).
/// - `CLibCrypto`: the system's OpenSSL libcrypto (Debian `libssl-dev`), for 3DES and SHA-256.
/// - `YKCCipher`: `FrameCipher`, the 3DES body encryption of frames flagged 0x01, on `CLibCrypto`
///   (with `YKCFrame` helpers, so it depends on `YKC`).
///   A target of its own so that both the gateway and the simulator use it without either
///   depending on the other, and without putting a C library under the pure `YKC` codec.
/// - `PileSim`: simulated piles that behave like real firmware, for tests, load and demos.
/// - `NATS`: a small NATS and JetStream client on SwiftNIO (the engine for cluster mode; docs/NATS-CLIENT.md).
/// - `PileGateCLI`: the command line's commands (serve, decode, simulate, stats, admin verbs, tail), a
///   library so that they are unit-tested.
/// - `pilegate`: the one executable, a `main` that runs `PileGateCommand`.
let package = Package(
    name: "pilegate",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "pilegate", targets: ["pilegate"]),
        .library(name: "YKC", targets: ["YKC"]),
        .library(name: "PileGate", targets: ["PileGate"]),
        .library(name: "PileSim", targets: ["PileSim"]),
        .library(name: "YKCCipher", targets: ["YKCCipher"]),
        .library(name: "NATS", targets: ["NATS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "YKCCipher",
            dependencies: ["CLibCrypto", "YKC", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "YKC",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "PileGate",
            dependencies: [
                "YKC", "YKCCipher", "NATS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
            ]
        ),
        .target(
            name: "PileSim",
            dependencies: [
                "YKC", "YKCCipher",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Atomics", package: "swift-atomics"),
            ]
        ),
        .target(
            name: "NATS",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "PileGateCLI",
            dependencies: [
                "YKC", "YKCCipher", "PileGate", "PileSim",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "pilegate",
            dependencies: ["PileGateCLI"]
        ),
        .testTarget(
            name: "YKCTests",
            dependencies: [
                "YKC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "YKCCipherTests",
            dependencies: ["YKCCipher", "OpenSSLTestSupport"]
        ),
        // The `openssl` command line as a reference, shared by the cipher and gateway tests.
        .target(name: "OpenSSLTestSupport", path: "Tests/OpenSSLTestSupport"),
        // A real nats-server per test, shared by the NATS client's and the cluster's tests.
        .target(
            name: "NATSTestSupport",
            dependencies: [
                "NATS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/NATSTestSupport"
        ),
        .testTarget(
            name: "PileGateTests",
            dependencies: [
                "PileGate", "PileSim", "YKC", "YKCCipher", "OpenSSLTestSupport", "NATS", "NATSTestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "PileSimTests",
            dependencies: [
                "PileSim", "YKC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "PileGateCLITests",
            dependencies: [
                "PileGateCLI", "PileGate", "PileSim", "YKC", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "NATSTests",
            dependencies: [
                "NATS", "NATSTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
