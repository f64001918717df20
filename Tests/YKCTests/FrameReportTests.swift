import NIOCore
import Testing

@testable import YKC

/// What `pilegate decode` prints, tested without a process (YKCDecodeSession / YKCFrameReport).
@Suite("Frame report (pilegate decode output)")
struct FrameReportTests {
    static let login = "6822001900012023121200001001011047562E393572313300898604D11722D034860602874E"
    static let heartbeatHighFirst = "680D25D30003202312120000100100D1AC"
    static let specHeartbeatBadCRC = "680D000100033201020000000101006890"

    @Test("a login frame prints the envelope and the decoded fields on one line")
    func loginLine() {
        var session = YKCDecodeSession()
        let out = session.decode(Self.login)
        #expect(out == [
            .json(
                #"{"envelope":{"length":34,"sequence":"0019","encryption":0,"code":1,"codeHex":"0x01","name":"login","title":"充电桩登录认证","crcWire":"874E","crcComputed":"874E","crcOrder":"lowFirst"},"message":{"pileId":"20231212000010","pileType":"ac","gunCount":1,"protocolVersion":16,"firmwareVersion":"GV.95r13","networkType":"sim","sim":"898604D11722D0348606","carrier":"china_telecom"}}"#
            )
        ])
        #expect(session.failureCount == 0)
    }

    @Test("spaces inside a frame are allowed and a byte-swapped CRC is reported as highFirst")
    func spacesAndHighFirst() throws {
        var session = YKCDecodeSession()
        let spaced = stride(from: 0, to: Self.heartbeatHighFirst.count, by: 2).map {
            let i = Self.heartbeatHighFirst.index(Self.heartbeatHighFirst.startIndex, offsetBy: $0)
            return String(Self.heartbeatHighFirst[i..<Self.heartbeatHighFirst.index(i, offsetBy: 2)])
        }.joined(separator: " ")
        let out = session.decode(spaced.lowercased())
        guard case .json(let line) = try #require(out.first) else { Issue.record("\(out)"); return }
        #expect(line.contains(#""crcWire":"D1AC","crcComputed":"ACD1","crcOrder":"highFirst""#))
        #expect(line.contains(#""message":{"pileId":"20231212000010","gun":1,"gunState":"normal"}"#))
    }

    @Test("several frames back to back in one input give one line each")
    func backToBack() {
        var session = YKCDecodeSession()
        let out = session.decode(Self.login + " " + Self.heartbeatHighFirst)
        #expect(out.count == 2)
        #expect(out.allSatisfy { if case .json = $0 { true } else { false } })
        #expect(session.frameCount == 2)
    }

    @Test("a raw message carries its reason")
    func rawReason() throws {
        var session = YKCDecodeSession()
        let reboot = VectorRow.all.first { $0.source == "JCPP" && $0.frameType == "0x92" }
        let out = session.decode(hexString(try #require(reboot).bytes))
        guard case .json(let line) = try #require(out.first) else { Issue.record("\(out)"); return }
        #expect(line.contains(#""code":146,"codeHex":"0x92","name":"raw_frame","title":"远程重启""#))
        #expect(line.contains(#""message":{"reason":"length_mismatch","#))
    }

    @Test("problems are one-line errors naming the frame; decoding continues", arguments: [
        ("68 0C 0", "error: frame 1: bad hex: odd number of hex digits (5); every byte needs two"),
        ("680G", "error: frame 1: bad hex: character 'G' at position 3 is not a hex digit"),
        ("   ", "error: frame 1: bad hex: no hex digits"),
        ("680C0019", "error: frame 1: truncated frame: length byte 0x0C needs 16 bytes, only 4 given"),
        ("68", "error: frame 1: truncated frame: 1 byte(s), a frame needs at least 8"),
        ("6802000000", "error: frame 1: bad length byte 0x02 (2): below the minimum of 4"),
        ("0102", "error: frame 1: no start byte: expected 0x68 at byte 0, found 0x01"),
        (specHeartbeatBadCRC,
         "error: frame 1: CRC mismatch: wire 6890, computed F11A (low byte first), neither byte order matches"),
        ("680925D300042023121200001001001D0B",
         "error: frame 1: CRC mismatch: wire 0010, computed C64A (low byte first), neither byte order matches; the length byte 0x09 gives a 13-byte frame but 17 bytes follow (wrong length byte?)"),
    ])
    func errors(input: String, message: String) {
        var session = YKCDecodeSession()
        let out = session.decode(input)
        #expect(out == [.error(message)])
        #expect(session.failureCount == 1)
    }

    @Test("after a failed frame the next input is still decoded and numbered")
    func continuesAfterError() {
        var session = YKCDecodeSession()
        var out = session.decode(Self.login)
        out += session.decode(Self.specHeartbeatBadCRC)
        out += session.decode(Self.heartbeatHighFirst)
        #expect(out.count == 3)
        guard case .error(let message) = out[1] else { Issue.record("\(out)"); return }
        #expect(message.hasPrefix("error: frame 2: CRC mismatch: wire 6890"))
        if case .json = out[2] {} else { Issue.record("frame 3 should decode") }
        #expect(session.frameCount == 3)
        #expect(session.failureCount == 1)
    }

    @Test("--ignore-crc decodes a frame with a placeholder CRC and says mismatch")
    func ignoreCRC() throws {
        var session = YKCDecodeSession(ignoreCRC: true)
        let out = session.decode(Self.specHeartbeatBadCRC)
        guard case .json(let line) = try #require(out.first) else { Issue.record("\(out)"); return }
        #expect(line.contains(#""crcWire":"6890","crcComputed":"F11A","crcOrder":"mismatch""#))
        #expect(line.contains(#""message":{"pileId":"32010200000001","gun":1,"gunState":"normal"}"#))
        #expect(session.failureCount == 0)
    }

    @Test("stdin lines: blank lines and # comments are skipped, CRLF is tolerated")
    func lines() {
        var session = YKCDecodeSession()
        let out = session.decodeLines("# capture\n\n" + Self.login + "\r\n  " + Self.heartbeatHighFirst + "  \n")
        #expect(out.count == 2)
        #expect(session.failureCount == 0)
        #expect(YKCDecodeSession.input(fromLine: "  # x") == nil)
        #expect(YKCDecodeSession.input(fromLine: " 68 0C ") == "68 0C")
    }

    @Test("every CRC-valid vector row prints a line whose envelope agrees with the row")
    func everyVector() {
        for row in VectorRow.all where row.crcValid && row.lengthConsistent {
            var session = YKCDecodeSession()
            guard case .json(let line) = session.decode(hexString(row.bytes)).first else {
                Issue.record("\(row.testDescription) failed")
                continue
            }
            #expect(line.contains(#""crcWire":"\#(row.crcOnWire)","crcComputed":"\#(row.crcComputedLowFirst)""#))
            #expect(line.contains(#""sequence":"\#(hexString(row.bytes[2..<4]))""#))
        }
    }
}
