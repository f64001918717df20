#!/usr/bin/env bash
# Fuzzes the gateway's JSON inputs over the network: the backend WebSocket (/v1/events) and the HTTP
# routes (bodies, path parameters, query parameters), against a real `pilegate serve` with two
# simulated piles online, so commands reach a pile and its replies come back. The mutations and
# the oracle are in scripts/fuzz_api.py; results and how to read them in docs/FUZZING.md.
#
#   scripts/fuzz-api.sh SECONDS [--seed N] [--ws-share 0..1] [--bin PATH | --no-build] [--api-port 18980] [--pile-port 18967]
#
# Failing inputs go to Fuzz/artifacts/api-*.bin (gitignored); the gateway's log to
# Fuzz/artifacts/api-gateway.log. Exit status 1 when any input failed the oracle.
set -euo pipefail
COMMAND="scripts/fuzz-api.sh $*"
source "$(dirname "$0")/lib/harness.sh"
harness_init fuzz-api
HARNESS_LOG_FD=2

[ $# -ge 1 ] || usage_error "usage: scripts/fuzz-api.sh SECONDS [--seed N] [--bin PATH | --no-build]"
SECONDS_TO_RUN=$1; shift
require_whole_number SECONDS "$SECONDS_TO_RUN"
SEED=1 WS_SHARE=0.5 API_PORT=18980 PILE_PORT=18967 BUILD=1 BIN=""
while [ $# -gt 0 ]; do
    case "$1" in
        --seed) SEED=$2; shift 2 ;;
        --ws-share) WS_SHARE=$2; shift 2 ;;
        --bin) BIN=$2; BUILD=0; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --api-port) API_PORT=$2; shift 2 ;;
        --pile-port) PILE_PORT=$2; shift 2 ;;
        *) usage_error "unknown argument $1" ;;
    esac
done
require_whole_number --seed "$SEED"
require_free_ports "$PILE_PORT" "$API_PORT"
release_build

ART=Fuzz/artifacts
mkdir -p "$ART"
DATA=$(mktemp -d /tmp/pilegate-fuzzapi.XXXXXX)
remove_on_exit "$DATA"
LOGF="$ART/api-gateway.log"
BOUND=$((SECONDS_TO_RUN + 120))

log "gateway on 127.0.0.1:$PILE_PORT (piles) / $API_PORT (API); log $LOGF"
PILEGATE_PILE_HOST=127.0.0.1 PILEGATE_PILE_PORT=$PILE_PORT PILEGATE_API_PORT=$API_PORT \
PILEGATE_DATA_DIRECTORY=$DATA PILEGATE_LOG_LEVEL=${FUZZ_LOG_LEVEL:-info} PILEGATE_DRAIN_WINDOW=0 \
    spawn_bounded "$BOUND" "$LOGF" "$BIN" serve
GW=$SPAWNED
wait_http "http://127.0.0.1:$API_PORT/readyz" 30 "$GW" "$LOGF"
GW_PID=$(child_pid "$GW")

spawn_bounded "$BOUND" "$ART/api-piles.log" "$BIN" simulate --gateway "127.0.0.1:$PILE_PORT" --piles 2 \
    --first-id 32010600000001 --heartbeat 5 --duration $((BOUND - 10))
for _ in $(seq 1 100); do
    n=$(curl -fsS "http://127.0.0.1:$API_PORT/v1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["online"])')
    [ "$n" -ge 2 ] && break
    sleep 0.1
done
[ "$n" -ge 2 ] || die "the simulated piles did not log in"

log "fuzzing for $SECONDS_TO_RUN s (seed $SEED)"
START_CPU=$(cpu_seconds "$GW_PID")
set +e
python3 scripts/fuzz_api.py --api-port "$API_PORT" --pile 32010600000001 --pid "$GW_PID" --log "$LOGF" \
    --seconds "$SECONDS_TO_RUN" --seed "$SEED" --ws-share "$WS_SHARE" --artifacts "$ART"
RC=$?
set -e
log "gateway CPU during the run: $(awk -v a="$START_CPU" -v b="$(cpu_seconds "$GW_PID")" 'BEGIN{printf "%.1f s", b-a}'); RSS now $(( $(rss_bytes "$GW_PID") / 1024 )) KiB"
machine_info
log "command: $COMMAND; $CPU_MODEL, $CORES cores, $MEM, $DATE, git $GIT"
exit $RC
