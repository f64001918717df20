import NIOCore
import Testing

@testable import YKC

/// Field values of concrete frames, checked against the facts' tables and worked examples.
@Suite("Message field values")
struct MessageValueTests {
    func row(_ source: String, _ type: String, index: Int = 0) throws -> VectorRow {
        let rows = VectorRow.all.filter { $0.source == source && $0.frameType == type }
        return try #require(rows.count > index ? rows[index] : nil)
    }

    func frame(_ bytes: [UInt8]) throws -> YKCFrame {
        var parser = YKCFrameParser()
        var b = ByteBuffer(bytes: bytes)
        guard case .frame(let f) = parser.next(&b) else { throw ParseFailure() }
        return f
    }

    struct ParseFailure: Error {}

    @Test("JCPP login: pile 20231212000010, AC, 1 gun, V1.6, firmware, SIM with hex letters, carrier")
    func login() throws {
        let message = YKCMessage.decode(try frame(try row("JCPP", "0x01").bytes))
        guard case .login(let m) = message else { Issue.record("not a login: \(message)"); return }
        #expect(m.pileId.description == "20231212000010")
        #expect(m.pileType == .ac)
        #expect(m.gunCount == 1)
        #expect(m.protocolVersion == 16)
        #expect(m.firmwareVersion == "GV.95r13")
        #expect(m.networkType == .sim)
        #expect(m.sim.description == "898604D11722D0348606")
        #expect(m.carrier == .chinaTelecom)
        #expect(message.json == #"{"pileId":"20231212000010","pileType":"ac","gunCount":1,"protocolVersion":16,"firmwareVersion":"GV.95r13","networkType":"sim","sim":"898604D11722D0348606","carrier":"china_telecom"}"#)
    }

    @Test("JCPP 0x13: charging, 373.2 V, 101.2 A, gun 34 °C, SOC 78 %, 16 min, 8.8000 kWh, 9.3280 yuan")
    func realtimeData() throws {
        let r = try row("JCPP", "0x13")
        let f = try frame(r.bytes)
        #expect(f.crcOrder == .highFirst)
        guard case .realtimeData(let m) = YKCMessage.decode(f) else { Issue.record("not 0x13"); return }
        #expect(m.tradeSerial.description == "20231212000010000000001005713600")
        #expect(m.pileId.description == "32010600395600")
        #expect(m.gun.number == 2)
        #expect(m.status == .charging)
        #expect(m.gunHolstered == .unknown)
        #expect(m.gunPlugged == .yes)
        #expect(m.outputVoltage.description == "373.2")
        #expect(m.outputCurrent.description == "101.2")
        #expect(m.gunTemperature.description == "34")
        #expect(m.soc == 78)
        #expect(m.maxBatteryTemperature.description == "35")
        #expect(m.chargingMinutes == 16)
        #expect(m.remainingMinutes == 32)
        #expect(m.energy.description == "8.8000")
        #expect(m.lossAdjustedEnergy.description == "0.0000")
        #expect(m.amount.description == "9.3280")
        #expect(m.hardwareFaults.raw == 0)
        let json = YKCMessage.realtimeData(m).json
        #expect(json.contains(#""outputVoltage":373.2,"outputCurrent":101.2,"gunTemperature":34,"#))
        #expect(json.contains(#""energy":8.8000,"lossAdjustedEnergy":0.0000,"amount":9.3280,"#))
        #expect(json.contains(#""status":"charging","gunHolstered":"unknown","gunPlugged":"yes""#))
    }

    @Test("JCPP 0x3B bill: times, per-period price/energy/amount, totals, origin and stop reason")
    func transactionRecord() throws {
        let f = try frame(try row("JCPP", "0x3B").bytes)
        guard case .transactionRecord(let m) = YKCMessage.decode(f) else { Issue.record("not 0x3B"); return }
        #expect(m.tradeSerial.description == "20231212000010323239000000000000")
        #expect(m.pileId.description == "20231212000010")
        #expect(m.gun.number == 1)
        #expect(m.startTime.iso8601() == "2023-12-13T17:04:14.000+08:00")
        #expect(m.endTime.iso8601() == "2023-12-13T17:09:36.000+08:00")
        #expect(m.sharpUnitPrice.description == "1.50000")
        #expect(m.peakUnitPrice.description == "1.30000")
        #expect(m.flatUnitPrice.description == "1.10000")
        #expect(m.valleyUnitPrice.description == "0.90000")
        #expect(m.sharpEnergy.description == "0.0000")
        #expect(m.valleyEnergy.description == "0.1650")
        #expect(m.valleyLossAdjustedEnergy.description == "0.1650")
        #expect(m.valleyAmount.description == "0.1400")
        #expect(m.meterStart.description == "0.0000")
        #expect(m.meterEnd.description == "0.0000")
        #expect(m.totalEnergy.description == "0.1650")
        #expect(m.totalLossAdjustedEnergy.description == "0.1650")
        #expect(m.totalAmount.description == "0.1400")
        #expect(m.vin == "")
        #expect(m.origin == .app)
        #expect(m.transactionTime.iso8601() == "2023-12-13T17:09:36.000+08:00")
        #expect(m.stopReason.rawValue == 0x40)
        #expect(m.stopReason.name == "app_remote_stop")
        #expect(m.physicalCardNumber.description == "0000000000000000")
    }

    @Test("0x3B meter readings are 5-byte little-endian values in 0.0001 kWh")
    func meterReadingsAreFiveBytes() throws {
        var body = Array(try row("JCPP", "0x3B").bytes.dropFirst(6).dropLast(2))
        body.replaceSubrange(102..<107, with: [0x0A, 0, 0, 0, 0])  // 0.0010 kWh
        body.replaceSubrange(107..<112, with: [0x4D, 0x75, 0, 0, 0x01])  // 0x01_0000_754D
        guard case .transactionRecord(let m) = decode(0x3B, body) else { Issue.record("not 0x3B"); return }
        #expect(m.meterStart.description == "0.0010")
        #expect(m.meterEnd.description == "429499.7325")
        #expect(decode(0x3B, body).bodyBytes == body)
    }

    @Test("0x0A prices are u32 in 0.00001 yuan: 40 0D 03 00 = 2.00000")
    func billingModelPrices() throws {
        let body = Array(try row("SPEC", "0x0A").bytes.dropFirst(6).dropLast(2))
        guard case .billingModelReply(let m) = decode(0x0A, body) else { Issue.record("not 0x0A"); return }
        #expect(m.pileId.description == "55031412782305")
        #expect(m.billingModel.description == "0100")
        #expect(m.sharpEnergyPrice.description == "2.00000")
        #expect(m.peakEnergyPrice.description == "3.00000")
        #expect(m.flatEnergyPrice.description == "4.00000")
        #expect(m.valleyEnergyPrice.description == "5.00000")
        // The sample's service fee bytes 9C 40 00 00 are 16540, not the 40000 the PDF meant (docs/ykc/PROTOCOL-FACTS.md §7.6).
        #expect(m.sharpServiceFee.description == "0.16540")
        #expect(m.lossRatio == 0)
        #expect(m.periods.count == 48)
        #expect(m.periods.allSatisfy { $0 == .sharp })

        let jcpp = try row("JCPP", "0x0A").bytes
        guard case .billingModelReply(let j) = decode(0x0A, Array(jcpp.dropFirst(6).dropLast(2))) else {
            Issue.record("JCPP 0x0A body should decode"); return
        }
        #expect(j.sharpEnergyPrice.description == "0.75000")
        #expect(j.sharpServiceFee.description == "0.45000")
        #expect(j.periods.first == .sharp)
        #expect(j.periods.last == .valley)
        #expect(YKCMessage.billingModelReply(j).json.contains(#""periods":["sharp","#))
    }

    @Test("0xF0 QR-code prefix: pile 36100095124032, format 1, 81-character prefix")
    func qrCodePrefix() throws {
        let f = try frame(try row("YKCP", "0xF0").bytes)
        guard case .qrCodePrefix(let m) = YKCMessage.decode(f) else { Issue.record("not 0xF0"); return }
        #expect(m.pileId.description == "36100095124032")
        #expect(m.format == .prefixOrgAndPile)
        #expect(m.prefix.count == 81)
        #expect(m.prefix == "https://charging.fzcsny.com/code/gunDetail?orgNo=MA38617Y8&id=1860&carScope=1&no=")
    }

    @Test("0x31 carries the VIN reversed on the wire; the decoded VIN reads normally")
    func reversedVIN() throws {
        let vin = "LSVAU2180N2183294"
        let body = hex("32 01 02 00 00 00 01 01 03 00 00 00 00 00 D1 4B 0A 54") + [UInt8](repeating: 0, count: 16)
            + Array(vin.utf8).reversed()
        guard case .startRequest(let m) = decode(0x31, body) else { Issue.record("not 0x31"); return }
        #expect(m.vin == vin)
        #expect(m.startMethod == .vin)
        #expect(m.cardNumber.description == "00000000D14B0A54")
        #expect(decode(0x31, body).bodyBytes == body)
        // A shorter VIN is zero-padded at the end of the text, i.e. at the start of the wire field.
        var short = m
        short.vin = "ABC"
        #expect(YKCMessage.startRequest(short).bodyBytes.suffix(17) == [UInt8](repeating: 0, count: 14) + Array("CBA".utf8))
    }

    @Test("0x34 balance A0 86 01 00 = 1000.00 yuan; card numbers kept verbatim")
    func remoteStartBalance() throws {
        let body = Array(try row("SPEC", "0x34").bytes.dropFirst(6).dropLast(2))
        guard case .remoteStart(let m) = decode(0x34, body) else { Issue.record("not 0x34"); return }
        #expect(m.balance.description == "1000.00")
        #expect(m.logicalCardNumber.description == "0000001000000573")
        #expect(m.physicalCardNumber.description == "00000000D14B0A54")
        #expect(m.tradeSerial.description == "55031412782305012018061914444680")
    }

    @Test("BMS currents carry the −400 A offset and temperatures the −50 °C offset")
    func bmsOffsets() throws {
        var body = [UInt8](repeating: 0, count: 44)
        body[26] = 0x38; body[27] = 0x02  // current demand raw 568 → −343.2 A (docs/ykc/PROTOCOL-FACTS.md §7.11)
        body[31] = 0xA0; body[32] = 0x0F  // measured current raw 4000 → 0.0 A
        body[40] = 0xFF; body[41] = 0xFF  // charger output current raw 65535 → 6153.5 A
        guard case .bmsDemand(let d) = decode(0x23, body) else { Issue.record("not 0x23"); return }
        #expect(d.currentDemand.description == "-343.2")
        #expect(d.measuredCurrent.description == "0.0")
        #expect(d.chargerOutputCurrent.description == "6153.5")
        #expect(decode(0x23, body).json.contains(#""currentDemand":-343.2"#))
        #expect(decode(0x23, body).bodyBytes == body)

        var status = [UInt8](repeating: 0, count: 31)
        status[25] = 75  // 25 °C
        status[27] = 0  // −50 °C
        guard case .bmsStatus(let s) = decode(0x25, status) else { Issue.record("not 0x25"); return }
        #expect(s.maxBatteryTemperature.description == "25")
        #expect(s.minBatteryTemperature.description == "-50")
        #expect(s.highestVoltageCell.description == "1")

        var config = [UInt8](repeating: 0, count: 45)
        config[26] = 0xA0; config[27] = 0x0F  // max charge current raw 4000 → 0.0 A
        config[33] = 0xDB; config[34] = 0x03  // SOC raw 987 → 98.7 % (0.1 % in 0x17 only)
        guard case .parameterConfig(let c) = decode(0x17, config) else { Issue.record("not 0x17"); return }
        #expect(c.maxChargeCurrent.description == "0.0")
        #expect(c.chargerMinOutputCurrent.description == "-400.0")
        #expect(c.soc.description == "98.7")
        #expect(c.maxTemperature.description == "-50")
    }

    @Test("JSON decimals go back to the same raw integers, negative offsets included")
    func bmsJSONRoundTrip() throws {
        var body = [UInt8](repeating: 0, count: 44)
        body[26] = 0x38; body[27] = 0x02
        let message = decode(0x23, body)
        let back = try YKCMessage.fromJSON(name: "bms_demand", JSONValue.parse(message.json))
        #expect(back.bodyBytes == body)
    }

    @Test("time sync carries a CP56Time2a: JCPP 0x56 is 2024-12-18 17:15:30")
    func timeSync() throws {
        let f = try frame(try row("JCPP", "0x56").bytes)
        guard case .timeSync(let m) = YKCMessage.decode(f) else { Issue.record("not 0x56"); return }
        #expect(m.time.iso8601() == "2024-12-18T17:15:30.000+08:00")
    }

    @Test("JCPP 0x94 firmware update: ASCII fields drop their zero padding")
    func firmwareUpdate() throws {
        let f = try frame(try row("JCPP", "0x94").bytes)
        guard case .firmwareUpdate(let m) = YKCMessage.decode(f) else { Issue.record("not 0x94"); return }
        #expect(m.pileModel == .dc)
        #expect(m.pilePower == 200)
        #expect(m.serverAddress == "http://127.0.0.1")
        #expect(m.serverPort == 144)
        #expect(m.username == "bawan")
        #expect(m.password == "123123")
        #expect(m.filePath == "/user/data")
        #expect(m.when == .immediately)
        #expect(m.downloadTimeoutMinutes == 1)
    }

    @Test("a non-BCD gun byte reads as its binary value and still re-encodes exactly")
    func nonBCDGun() {
        let body = hex("32 01 02 00 00 00 01 1A")
        #expect(decode(0x36, body).json == #"{"pileId":"32010200000001","gun":26}"#)
        #expect(decode(0x36, body).bodyBytes == body)
    }

    @Test("unknown enum values are kept as numbers")
    func unknownEnum() {
        let body = hex("32 01 02 00 00 00 01 07")
        #expect(decode(0x02, body).json == #"{"pileId":"32010200000001","result":7}"#)
    }
}
