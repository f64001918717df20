#!/usr/bin/env bash
# Loads the gateway's web view in headless Chromium the way a person would, lets its scripts poll
# /v1/stats for a while, and writes what it rendered:
#   OUT_DIR/dom.html   the DOM after the scripts ran (--dump-dom)
#   OUT_DIR/page.png   a screenshot
# Usage: scripts/webview-check.sh URL OUT_DIR [BUDGET_MS]
# e.g.   scripts/webview-check.sh 'http://127.0.0.1:8780/?interval=0.5' /tmp/webview
# Needs Debian's `chromium` (scripts/setup.sh installs it). Exits 3 when it is missing.
set -euo pipefail
source "$(dirname "$0")/lib/harness.sh"
harness_init webview-check --stay   # OUT_DIR is relative to the caller's directory
url=${1:?usage: webview-check.sh URL OUT_DIR [BUDGET_MS]}
out=${2:?usage: webview-check.sh URL OUT_DIR [BUDGET_MS]}
budget=${3:-4000}
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "webview-check: chromium is not installed (scripts/setup.sh installs it)" >&2; exit 3; }
mkdir -p "$out"
profile=$(mktemp -d)
remove_on_exit "$profile"
flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --no-default-browser-check
       --disable-extensions --disable-background-networking --disable-component-update --mute-audio
       --user-data-dir="$profile" --window-size=1280,1000 --hide-scrollbars --virtual-time-budget="$budget")
"$browser" "${flags[@]}" --dump-dom "$url" > "$out/dom.html" 2> "$out/chromium-dom.log"
"$browser" "${flags[@]}" --screenshot="$out/page.png" "$url" > /dev/null 2> "$out/chromium-shot.log"
[ -s "$out/dom.html" ] || die "empty DOM (see $out/chromium-dom.log)"
[ -s "$out/page.png" ] || die "no screenshot (see $out/chromium-shot.log)"
echo "webview-check: $out/dom.html $out/page.png"
