import Foundation
import NIOCore
import NIOEmbedded
@testable import PileGate
import Testing
import YKC

/// glibc's size of a heap block (not in the Glibc module's headers).
@_silgen_name("malloc_usable_size") private func mallocUsableSize(_ pointer: UnsafeMutableRawPointer?) -> Int

/// What one idle pile costs in the gateway's own objects (docs/BENCHMARKS.md, "Memory per pile"):
/// the bounds keep the packing from eroding unnoticed. Sizes, not timings.
@Suite("Session memory")
struct SessionMemoryTests {
    @Test("an idle session's handler, machine and gun table stay packed")
    func packed() throws {
        typealias Machine = PileSessionStateMachine<EventLoopPromise<YKCMessage>>
        var config = GatewayConfiguration()
        config.dataDirectory = NSTemporaryDirectory() + "pilegate-memory-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: config.dataDirectory) }
        let gateway = try Gateway(config: config)
        let handler = PileSessionHandler(gateway: gateway.context)
        let handlerBytes = mallocUsableSize(Unmanaged.passUnretained(handler).toOpaque())
        var guns = PileGunTable()
        guns.heartbeat(1, state: .normal, at: .now())
        guns.heartbeat(2, state: .normal, at: .now())
        let gunBytes = guns.guns.withUnsafeBufferPointer { mallocUsableSize(UnsafeMutableRawPointer(mutating: $0.baseAddress)?.advanced(by: -32)) }
        print(
            "session memory: handler \(handlerBytes) B (machine \(MemoryLayout<Machine>.size) B), gun table of 2 \(gunBytes) B,",
            "handle info \(MemoryLayout<PileSessionInfo>.size) B, receive buffer \(PileListener.receiveBufferBytes) B")
        #expect(MemoryLayout<Machine>.size <= 160)
        #expect(MemoryLayout<PileGunTable.Gun>.stride == 8)
        // 248 usable bytes is a 256-byte glibc block; 249–264 would take a 272-byte one.
        #expect(handlerBytes <= 248)
        // The handle (16-byte header, the info, a 16-byte channel existential) is then 168 bytes,
        // a 176-byte block; 137 bytes of info would make it 192.
        #expect(MemoryLayout<PileSessionInfo>.size <= 136)
        // Two 8-byte guns behind the array's 32-byte header: a 48-byte request, 56 usable.
        #expect(gunBytes <= 56)
        // The receive buffer NIO keeps per channel for life: 64 bytes and its storage object.
        #expect(PileListener.receiveBufferBytes <= 64)
    }

    @Test("the session info keeps host:port as the port alone and any other address verbatim")
    func remoteAddress() {
        let login = Login(
            pileId: PileID(raw: 1), pileType: .ac, gunCount: 1, protocolVersion: 16, firmwareVersion: "x",
            networkType: .lan, sim: "0", carrier: .other)
        func info(_ address: String, _ host: String) -> PileSessionInfo {
            PileSessionInfo(
                connectionId: 1, pileId: PileID(raw: 1), remoteAddress: address, remoteHost: host, login: login, lane: "",
                connectedAt: Date(timeIntervalSince1970: 0), loggedInAt: Date(timeIntervalSince1970: 0))
        }
        for (address, host) in [
            ("123.145.167.189:54321", "123.145.167.189"), ("127.0.0.1", "127.0.0.1"), ("10.0.0.1:080", "10.0.0.1"),
            ("10.0.0.1:+80", "10.0.0.1"), ("10.0.0.1:70000", "10.0.0.1"), ("[::1]:9", "::1"), ("", ""), ("h:1", "other"),
        ] {
            #expect(info(address, host).remoteAddress == address)
        }
        var moved = info("10.0.0.1:80", "10.0.0.1")
        #expect(moved == info("10.0.0.1:80", "10.0.0.1"))
        moved.remoteHost = "10.0.0.2"
        #expect(moved.remoteAddress == "10.0.0.1:80")
        moved.remoteAddress = "10.0.0.2:81"
        #expect(moved.remoteAddress == "10.0.0.2:81")
        #expect(moved == info("10.0.0.2:81", "10.0.0.2"))
    }
}
