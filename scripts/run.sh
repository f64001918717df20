#!/usr/bin/env bash
# Runs the gateway on its embedded defaults (piles on :8767, API on 127.0.0.1:8780, data in ./pilegate-data).
set -euo pipefail
cd "$(dirname "$0")/.."
# The toolchain lives in /opt/swift on the project's machines; use it when PATH lacks swift.
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
scripts/setup.sh
swift build -c release --product pilegate
exec .build/release/pilegate serve "$@"
