#!/usr/bin/env bash
# Installs what a fresh machine needs to build and test pilegate, then builds it.
# Idempotent: safe to run again. Needs Swift 6 on PATH (the toolchain is not a Debian package).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# The codec generator and the docs check (scripts/generate-ykc.py --check, scripts/check-docs.py in test.sh).
dpkg -s python3 >/dev/null 2>&1 || need+=(python3)
dpkg -s libsqlite3-dev >/dev/null 2>&1 || need+=(libsqlite3-dev)
# OpenSSL libcrypto for 3DES frame encryption (Sources/CLibCrypto); the openssl command line
# produces the reference ciphertext in Tests/YKCCipherTests.
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
dpkg -s openssl >/dev/null 2>&1 || need+=(openssl)
# Headless Chromium for the web view check (scripts/webview-check.sh, run by the test suite).
dpkg -s chromium >/dev/null 2>&1 || need+=(chromium)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || need+=(fonts-dejavu-core)
# The NATS client's tests start a real nats-server (JetStream on); they make TLS certificates with openssl (above).
dpkg -s nats-server >/dev/null 2>&1 || need+=(nats-server)
# The deployment checks (scripts/check-manifests.sh) install their pinned PyPI tools into a virtualenv.
dpkg -s python3-venv >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

command -v swift >/dev/null 2>&1 || { echo "setup: swift is not on PATH (expected Swift 6.x, e.g. /opt/swift/usr/bin)" >&2; exit 1; }
