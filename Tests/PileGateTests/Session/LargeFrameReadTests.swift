import Foundation
@testable import PileGate
import Testing
import YKC

/// Frames larger than a pile connection's receive buffer (`PileListener.receiveBufferBytes`, 64
/// bytes): a 0x13 (68 B) and a 0x3B (166 B) arrive over several reads and are joined by the session
/// handler. Driven over loopback with a raw socket, so the gateway sees exactly these bytes, and
/// checked where they end up: the backend's events, the pile's 0x04 and 0x40 replies.
@Suite("Frames larger than the receive buffer")
struct LargeFrameReadTests {
    static let id = "77010600000001"

    static func realtime(energy: Int64) -> YKCFrame {
        let zero = YKCDecimal(units: 0, scale: 1)
        return RealtimeData(
            tradeSerial: TradeSerial(id + "012611301200000001")!, pileId: PileID(id)!, gun: 1, status: .charging,
            gunHolstered: .no, gunPlugged: .yes, outputVoltage: YKCDecimal(units: 4000, scale: 1),
            outputCurrent: YKCDecimal(units: 1500, scale: 1), gunTemperature: zero, gunCableCode: .zero, soc: 42,
            maxBatteryTemperature: zero, chargingMinutes: 3, remainingMinutes: 57, energy: YKCDecimal(units: energy, scale: 4),
            lossAdjustedEnergy: YKCDecimal(units: energy, scale: 4), amount: YKCDecimal(units: 0, scale: 4),
            hardwareFaults: .init(raw: 0)
        ).frame(sequence: YKCSequence(counter: 0x1300))
    }

    @Test("realtime data, bills and heartbeats in one write of 400+ bytes are all read, forwarded and answered")
    func oneLargeWrite() async throws {
        #expect(PileListener.receiveBufferBytes == 64)
        try await withOutbox { gw, _, _ in
            let backend = try await TestBackend.connect(apiPort: gw.apiPort)
            try await backend.subscribe(service: "billing", instance: "b1", events: ["realtime_data", "transaction_record"])
            let raw = try await RawClient.connect(port: gw.pilePort)
            try await raw.send(Frames.login(Self.id, sequence: 0))
            #expect(await gw.eventually { Frames.parse(raw.receivedBytes).contains { $0.code == 0x02 } })

            let serials = [Self.id + "012611301200000001", Self.id + "012611301200000002"]
            let bills = serials.enumerated().map { i, serial in
                bill(Self.id, serial: serial, kWh: i == 0 ? "3.0067" : "12.5").frame(sequence: YKCSequence(counter: UInt16(0x3B00 + i)))
            }
            let heartbeats = [Frames.heartbeat(Self.id, gun: 1, sequence: 0x0301), Frames.heartbeat(Self.id, gun: 2, sequence: 0x0302)]
            #expect(Self.realtime(energy: 12_345).bytes.count == 68)
            #expect(bills[0].bytes.count == 166)
            // One write: 68 + 166 + 17 + 17 + 166 = 434 bytes, more than one readable event's four
            // reads of 64 bytes, with frame boundaries falling anywhere in a read.
            let write = Self.realtime(energy: 12_345).bytes + bills[0].bytes + heartbeats[0].bytes + heartbeats[1].bytes + bills[1].bytes
            #expect(write.count == 434)
            try await raw.send(write)

            let live = try await backend.waitForEvent("realtime_data")
            let data = live["data"] as? [String: Any]
            #expect(data?["soc"] as? Int == 42)
            #expect(data?["energy"] as? Double == 1.2345)
            #expect(data?["outputVoltage"] as? Double == 400.0)
            for serial in serials {
                _ = try await backend.waitForEvent("transaction_record") { ($0["data"] as? [String: Any])?["tradeSerial"] as? String == serial }
            }
            #expect(await gw.eventually { Frames.parse(raw.receivedBytes).filter { $0.code == 0x40 }.count == 2 })
            let acks = Frames.parse(raw.receivedBytes).filter { $0.code == 0x40 }.compactMap {
                if case .transactionRecordAck(let a) = YKCMessage.decode($0) { a.tradeSerial.description } else { nil }
            }
            #expect(acks.sorted() == serials)
            let beats = Frames.parse(raw.receivedBytes).filter { $0.code == 0x04 }.map(\.sequence)
            #expect(beats == [YKCSequence(counter: 0x0301), YKCSequence(counter: 0x0302)])
            #expect(gw.counters.malformed.values.allSatisfy { $0.load(ordering: .relaxed) == 0 })
            await raw.close()
            await backend.close()
        }
    }

    @Test("a bill split over several readable events, at odd places, is joined and acknowledged")
    func billOverSeveralEvents() async throws {
        try await withOutbox { gw, _, _ in
            let raw = try await RawClient.connect(port: gw.pilePort)
            try await raw.send(Frames.login(Self.id, sequence: 0))
            #expect(await gw.eventually { Frames.parse(raw.receivedBytes).contains { $0.code == 0x02 } })
            let serial = Self.id + "012611301200000003"
            let bytes = bill(Self.id, serial: serial).frame(sequence: YKCSequence(counter: 0x3B10)).bytes
            let beat = Frames.heartbeat(Self.id, gun: 1, sequence: 0x0311).bytes
            // Its first byte alone (the length not yet known), then pieces across the 64-byte
            // reads, the last one together with a heartbeat; each its own TCP write after a pause.
            for part in [bytes[0..<1], bytes[1..<70], bytes[70..<129], bytes[129...] + beat] {
                try await raw.send(Array(part))
                try await Task.sleep(nanoseconds: 30_000_000)
            }
            #expect(await gw.eventually { Frames.parse(raw.receivedBytes).contains { $0.code == 0x40 } })
            let ack = Frames.parse(raw.receivedBytes).first { $0.code == 0x40 }.flatMap {
                if case .transactionRecordAck(let a) = YKCMessage.decode($0) { a.tradeSerial.description } else { nil }
            }
            #expect(ack == serial)
            #expect(await gw.eventually { Frames.parse(raw.receivedBytes).contains { $0.code == 0x04 } })
            #expect(gw.counters.malformed.values.allSatisfy { $0.load(ordering: .relaxed) == 0 })
            await raw.close()
        }
    }
}
