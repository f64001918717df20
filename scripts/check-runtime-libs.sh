#!/usr/bin/env bash
# Checks the Dockerfile's runtime stage against a real release binary: the packages it installs
# must provide every library `ldd` lists (directly, or as their Debian dependencies), and each of
# them must own a library the binary loads directly (readelf NEEDED), so nothing else is installed.
# Needs a Debian host like the runtime image (bookworm) and a static-stdlib release build, which
# takes minutes, so CI does not run it; docs/DEPLOYMENT.md records its output.
#
# Usage: scripts/check-runtime-libs.sh [BINARY]    (default .build/release/pilegate, built with
#        swift build -c release --static-swift-stdlib --product pilegate)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-.build/release/pilegate}
[ -x "$BIN" ] || { echo "check-runtime-libs: no executable $BIN" >&2; exit 2; }

# The packages of the runtime stage: the `apt-get install` after the last FROM.
mapfile -t installed < <(awk '/^FROM /{stage++} {print stage "\t" $0}' Dockerfile \
    | awk -F'\t' -v last="$(grep -c '^FROM ' Dockerfile)" '$1 == last {print $2}' \
    | tr '\\' '\n' | grep -o 'install -y --no-install-recommends.*' | head -1 \
    | sed 's/install -y --no-install-recommends//' | tr ' ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' || true)
[ ${#installed[@]} -gt 0 ] || { echo "check-runtime-libs: no apt-get install in the Dockerfile's last stage" >&2; exit 1; }

owner() {  # the Debian package that owns a library file (dpkg knows the pre-merged-/usr path)
    local f=$1 p
    p=$(dpkg -S "$f" 2>/dev/null | head -1 | cut -d: -f1) || true
    [ -n "$p" ] || p=$(dpkg -S "$(readlink -f "$f")" 2>/dev/null | head -1 | cut -d: -f1) || true
    [ -n "$p" ] || p=$(dpkg -S "/lib/x86_64-linux-gnu/$(basename "$f")" 2>/dev/null | head -1 | cut -d: -f1) || true
    echo "${p:-?$f}"
}

libs=$(ldd "$BIN" | awk '/=>/ {print $3} /ld-linux/ {print $1}')
if ldd "$BIN" | grep -q "not found"; then
    ldd "$BIN" | grep "not found" >&2
    echo "check-runtime-libs: libraries missing on this host" >&2
    exit 1
fi
needed_pkgs=$(for f in $libs; do owner "$f"; done | sort -u)
direct=$(readelf -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
direct_pkgs=$(for n in $direct; do owner "$(ldd "$BIN" | awk -v n="$n" '$1 == n {print $3}')"; done | sort -u)
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
    --no-enhances libc6 "${installed[@]}" 2>/dev/null | grep -v '^ ' | sed 's/:amd64$//' | sort -u)

status=0
echo "check-runtime-libs: $BIN loads $(echo "$libs" | wc -l) libraries from $(echo "$needed_pkgs" | wc -l) packages;" \
     "directly: $(echo $direct)"
echo "check-runtime-libs: the runtime stage installs: ${installed[*]}"
missing=$(comm -23 <(echo "$needed_pkgs") <(echo "$closure"))
if [ -n "$missing" ]; then
    echo "check-runtime-libs: FAIL: not provided by the runtime stage: $(echo $missing)" >&2
    status=1
fi
for p in "${installed[@]}"; do
    if ! grep -qx "$p" <<<"$direct_pkgs"; then
        echo "check-runtime-libs: FAIL: $p owns no library the binary loads directly" >&2
        status=1
    fi
done
[ $status -eq 0 ] && echo "check-runtime-libs: every library is provided, nothing extra is installed"
exit $status
