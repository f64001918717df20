#!/usr/bin/env bash
# Builds the YKC codec benchmark (nested package Benchmarks/, release) and prints its table.
#
#   scripts/bench-codec.sh [--seconds S] [--repeats R]
#
# Single thread; numbers are per core. Heap allocations are counted by an interposed malloc.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --package-path Benchmarks --product ykc-bench 2>&1 | grep -v '^\[' || true
BIN=Benchmarks/.build/release/ykc-bench
[ -x "$BIN" ] || { echo "bench-codec: build failed" >&2; exit 1; }
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $(swift --version 2>/dev/null | head -1)"
"$BIN" "$@"
