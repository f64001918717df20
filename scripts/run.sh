#!/usr/bin/env bash
# Runs the gateway on its embedded defaults (piles on :8767, API on 127.0.0.1:8780, data in ./pilegate-data).
set -euo pipefail
source "$(dirname "$0")/lib/harness.sh"
harness_init run
scripts/setup.sh
release_build
exec "$BIN" serve "$@"
