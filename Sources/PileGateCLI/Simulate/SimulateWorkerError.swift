/// A `--workers` run could not start or read its workers.
struct SimulateWorkerError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
