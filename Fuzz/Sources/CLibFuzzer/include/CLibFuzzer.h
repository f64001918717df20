#ifndef PILEGATE_CLIBFUZZER_H
#define PILEGATE_CLIBFUZZER_H
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (libclang_rt.fuzzer, LLVM >= 11). The fuzz executable's Swift `main` calls it,
/// because SwiftPM links every executable target with its own `main` (`--defsym main=<Module>_main`),
/// which leaves libFuzzer's `main` unused.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
