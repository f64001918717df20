import CLibFuzzer

#if canImport(Glibc)
import Glibc
#endif

// SwiftPM gives every executable target its own `main` (linked as `main`), so libFuzzer's `main` is
// never used: this one hands the command line to libFuzzer's driver with the entry in FuzzYKC.swift.
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in ykcFuzzOneInput(data, size) })
