#!/usr/bin/env bash
# The one test command: installs prerequisites, builds, and runs every test (XCTest and Swift Testing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --build-tests
swift test --skip-build --parallel --num-workers 2 "$@"
