/// A closure kept in a lock box (`NIOLockedValueBox<Callback<…>?>`), never the bare function type.
///
/// Why: a function stored directly as a generic box's value (`NIOLockedValueBox<(@Sendable (X) -> Y)?>`)
/// is re-abstracted at every `inout` access, `withLockedValue { $0 }` included, and the write-back
/// wraps the stored closure in two more reabstraction thunks each time. After n reads a call walks
/// 2n thunks, so n calls cost O(n²): a cluster node reading its "pile online elsewhere" hook once
/// per pile-directory update spent its cooperative threads walking thunk chains within seconds of
/// a 96,000-pile login wave and stopped answering logins and heartbeats (docs/BENCHMARKS.md,
/// "Cluster load"). A struct field keeps one representation, so a read costs nothing extra.
/// `CallbackTests` checks both this and that no bare function type is kept in a box again.
struct Callback<Function: Sendable>: Sendable {
    let call: Function

    init(_ call: Function) {
        self.call = call
    }
}
