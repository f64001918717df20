import Foundation
import NIOCore
import Testing

@testable import YKC

/// Values from outside become frame fields exactly or not at all (issue 14.2, 14.13).
@Suite("Exact field values")
struct ExactValueTests {
    @Test("decimal text parses exactly, with exponents; what does not fit is nil, never a trap")
    func decimalText() {
        #expect(YKCDecimal("12.345")?.description == "12.345")
        #expect(YKCDecimal("1e-9")?.description == "0.000000001")
        #expect(YKCDecimal("2.5E+3")?.description == "2500")
        #expect(YKCDecimal("-0.000000000000000000000")?.description == "0.000000000000000000")
        #expect(YKCDecimal("0.0000000000000000001") == nil)
        #expect(YKCDecimal("1e300") == nil)
        #expect(YKCDecimal("1e-300") == nil)
        #expect(YKCDecimal("9999999999999999999") == nil)
        #expect(YKCDecimal("999999999999999999")?.units == 999_999_999_999_999_999)
        #expect(YKCDecimal("1e") == nil && YKCDecimal("e5") == nil && YKCDecimal("-") == nil && YKCDecimal("1.2.3") == nil)
    }

    @Test("a JSON number is its shortest decimal: 12.345 stays 12.345, 0.1 stays 0.1")
    func decimalNumbers() {
        #expect(YKCDecimal(exactly: 12.345)?.description == "12.345")
        #expect(YKCDecimal(exactly: 0.1)?.description == "0.1")
        #expect(YKCDecimal(exactly: 100)?.description == "100.0")
        #expect(YKCDecimal(exactly: 1e300) == nil)
        #expect(YKCDecimal(exactly: .nan) == nil)
        #expect(YKCDecimal(exactly: -.infinity) == nil)
    }

    @Test("raw() refuses what the field cannot carry; the range is stated")
    func rawFits() {
        #expect(YKCDecimal("12.345")?.raw(scale: 2, byteCount: 4) == nil)
        #expect(YKCDecimal("12.340")?.raw(scale: 2, byteCount: 4) == 1234)
        #expect(YKCDecimal("-50")?.raw(scale: 0, offset: -50, byteCount: 1) == 0)
        #expect(YKCDecimal("9223372036854775.807")?.raw(scale: 3, offset: -50, byteCount: 8) == nil)
        #expect(YKCDecimal(units: 1, scale: 40).raw(scale: 2, byteCount: 4) == nil)
        #expect(YKCDecimal(units: 0, scale: 40).raw(scale: 2, byteCount: 4) == 0)
        let r = YKCDecimal.fieldRange(scale: 2, byteCount: 4)
        #expect("\(r.lowerBound)...\(r.upperBound)" == "0.00...42949672.95")
        let t = YKCDecimal.fieldRange(scale: 0, offset: -50, byteCount: 1)
        #expect("\(t.lowerBound)...\(t.upperBound)" == "-50...205")
    }

    @Test("times outside what 7 bytes carry are refused, not moved to another year or day")
    func times() {
        #expect(CP56Time2a(iso8601: "2200-01-01T00:00:00+08:00") == nil)
        #expect(CP56Time2a(iso8601: "1990-01-01T00:00:00+08:00") == nil)
        #expect(CP56Time2a(iso8601: "2024-01-02T24:00:00") == nil)
        #expect(CP56Time2a(iso8601: "2024-13-02T10:00:00") == nil)
        #expect(CP56Time2a(iso8601: "2024-01-02T10:00:00.0005") == nil)
        #expect(CP56Time2a(iso8601: "2000-01-01T00:00:00+09:00") == nil)
        #expect(CP56Time2a(iso8601: "2024-01-02T10:00:00.123000+08:00")?.iso8601() == "2024-01-02T10:00:00.123+08:00")
        #expect(CP56Time2a(iso8601: "2127-12-31T23:59:59.999+08:00")?.year == 2127)
        #expect(CP56Time2a(iso8601: "2000-01-01T00:00:00Z")?.iso8601() == "2000-01-01T08:00:00.000+08:00")
        #expect(CP56Time2a(exactlyYear: 2024, month: 2, day: 29, hour: 0, minute: 0, second: 0) != nil)
        #expect(CP56Time2a(exactlyYear: 2023, month: 2, day: 29, hour: 0, minute: 0, second: 0) == nil)
    }
}
