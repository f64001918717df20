import Foundation

/// A plain-text table for people: a header row, columns padded to width, numbers right-aligned.
struct TextTable {
    var header: [String]
    var rows: [[String]] = []
    /// Columns to right-align (numbers).
    var rightAligned: Set<Int> = []
    var indent = ""

    init(_ header: [String], rightAligned: Set<Int> = [], indent: String = "") {
        self.header = header
        self.rightAligned = rightAligned
        self.indent = indent
    }

    mutating func add(_ row: [String]) { rows.append(row) }

    var rendered: String {
        let all = [header] + rows
        var widths = Array(repeating: 0, count: header.count)
        for row in all {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        var out = ""
        for row in all {
            var cells: [String] = []
            for i in 0..<widths.count {
                let cell = i < row.count ? row[i] : ""
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                cells.append(rightAligned.contains(i) ? pad + cell : (i == widths.count - 1 ? cell : cell + pad))
            }
            out += indent + cells.joined(separator: "  ") + "\n"
        }
        return out
    }
}
