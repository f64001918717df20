#!/usr/bin/env bash
# Builds the YKC codec benchmark (nested package Benchmarks/, release) and prints its table.
#
#   scripts/bench-codec.sh [--seconds S] [--repeats R]
#
# Single thread; numbers are per core. Heap allocations are counted by an interposed malloc.
# Waits (at most 600 s) while another benchmark holds the machine (scripts/lib/lock.sh).
set -euo pipefail
source "$(dirname "$0")/lib/harness.sh"
harness_init bench-codec
HARNESS_LOG_FD=2

bench_lock 600
swift build -c release --package-path Benchmarks --product ykc-bench 2>&1 | grep -v '^\[' || true
BIN=Benchmarks/.build/release/ykc-bench
[ -x "$BIN" ] || die "build failed"
machine_info
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $CPU_MODEL, $CORES cores, $(swift --version 2>/dev/null | head -1)"
"$BIN" "$@"
