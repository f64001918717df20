#!/usr/bin/env bash
# Gateway core load test (issue 3): N simulated piles against one `pilegate serve`, on loopback.
#
# Measures, and prints as a table (and writes to docs/BENCHMARKS.md, section "Gateway core (issue 3)"):
#   - time from starting the simulators until all N piles are logged in (/v1/stats polled every 100 ms)
#   - gateway RSS per pile: (RSS with all logged in − RSS before any connection) / N, when all are in,
#     after a settle period, and after the heartbeat soak
#   - gateway CPU per heartbeat round trip: Δ process.cpuSeconds / Δ counters.heartbeats over the soak
#   - a reconnect storm: kill -9 every simulator at once, restart them at once, time until all N are
#     logged in again, and the gateway's counters over the storm (refused, deferred logins, closes)
#
# Everything it starts is stopped on exit (trap), every wait has a limit, and the gateway itself
# runs under `timeout`, so nothing outlives a crashed run for long. Traffic goes to 127.0.0.x only.
#
# Usage: scripts/load-test.sh [--piles 19000] [--sims 4] [--guns 2] [--heartbeat 10] [--soak 300]
#          [--settle 5] [--sources 16] [--sim-threads 1] [--rate 0] [--pile-port 18767] [--api-port 18780]
#          [--accept-rate 20000] [--login-rate 20000] [--login-wait 60] [--storm-timeout 120]
#          [--notes FILE] [--no-build] [--no-docs]
# A process may hold at most 20,000 open files here: keep --piles ≤ ~19,500 (one gateway) and
# --piles/--sims well below that.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
HELPER="python3 $ROOT/scripts/load-test-stats.py"

PILES=19000 SIMS=4 GUNS=2 HEARTBEAT=10 SOAK=300 SETTLE=5 SOURCES=16 SIM_THREADS=1 RATE=0
PILE_PORT=18767 API_PORT=18780 ACCEPT_RATE=20000 LOGIN_RATE=20000 LOGIN_WAIT=60 STORM_TIMEOUT=120
NOTES="" BUILD=1 DOCS=1
COMMAND="scripts/load-test.sh $*"
while [ $# -gt 0 ]; do
    case "$1" in
        --piles) PILES=$2; shift 2 ;;
        --sims) SIMS=$2; shift 2 ;;
        --guns) GUNS=$2; shift 2 ;;
        --heartbeat) HEARTBEAT=$2; shift 2 ;;
        --soak) SOAK=$2; shift 2 ;;
        --settle) SETTLE=$2; shift 2 ;;
        --sources) SOURCES=$2; shift 2 ;;
        --sim-threads) SIM_THREADS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --pile-port) PILE_PORT=$2; shift 2 ;;
        --api-port) API_PORT=$2; shift 2 ;;
        --accept-rate) ACCEPT_RATE=$2; shift 2 ;;
        --login-rate) LOGIN_RATE=$2; shift 2 ;;
        --login-wait) LOGIN_WAIT=$2; shift 2 ;;
        --storm-timeout) STORM_TIMEOUT=$2; shift 2 ;;
        --notes) NOTES=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-docs) DOCS=0; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "load-test: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ "$PILES" -lt 1 ] || [ "$SIMS" -lt 1 ] || [ "$PILES" -gt 19500 ]; then
    echo "load-test: need 1 <= --piles <= 19500 (20,000 open files per process) and --sims >= 1" >&2
    exit 2
fi

API="http://127.0.0.1:$API_PORT/v1/stats"
RUN=$(mktemp -d /tmp/pilegate-loadtest.XXXXXX)   # logs and snapshots; kept for inspection
DATA=$(mktemp -d /tmp/pilegate-loadtest-data.XXXXXX)
GW_PID=""        # the `timeout` wrapper around the gateway
SIM_PIDS=()
POLLER_PID=""

log() { printf '[load-test %s] %s\n' "$(date +%T)" "$*"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ ${#SIM_PIDS[@]} -gt 0 ]; then
        kill -TERM "${SIM_PIDS[@]}" 2>/dev/null || true
    fi
    if [ -n "$POLLER_PID" ]; then
        kill -TERM "$POLLER_PID" 2>/dev/null || true
    fi
    if [ -n "$GW_PID" ]; then
        kill -TERM "$GW_PID" 2>/dev/null || true     # timeout forwards it to the gateway
    fi
    local deadline=$((SECONDS + 15))
    for pid in "${SIM_PIDS[@]}" $GW_PID; do
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ -n "$GW_PID" ]; then
        pkill -KILL -P "$GW_PID" 2>/dev/null || true    # the gateway, if its wrapper went first
    fi
    wait 2>/dev/null || true
    rm -rf "$DATA"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in "$PILE_PORT" "$API_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "load-test: port $port is already in use" >&2
        exit 1
    fi
done

if [ "$BUILD" = 1 ]; then
    log "building release (swift build -c release --product pilegate; waits for other SwiftPM runs)"
    swift build -c release --product pilegate 2>&1 | tail -n 3
fi
BIN="$ROOT/.build/release/pilegate"
[ -x "$BIN" ] || { echo "load-test: $BIN missing" >&2; exit 1; }

CPU_MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -n1)
CORES=$(nproc)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
DATE=$(date -u +"%Y-%m-%d %H:%M UTC")
GIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no -- Sources Package.swift 2>/dev/null)" ]; then
    GIT="$GIT + uncommitted changes in Sources"
fi
PER=$((PILES / SIMS))
BASE_ID=32010600000001
# Bound on the whole run: the gateway dies by itself after this even if this script is killed.
BOUND=$((LOGIN_WAIT + SETTLE + SOAK + STORM_TIMEOUT + 180))

cat >"$RUN/run.env" <<EOF
COMMAND=$COMMAND
PILES=$PILES
SIMS=$SIMS
GUNS=$GUNS
HEARTBEAT=$HEARTBEAT
SOAK=$SOAK
SETTLE=$SETTLE
SOURCES=$SOURCES
SIM_THREADS=$SIM_THREADS
ACCEPT_RATE=$ACCEPT_RATE
LOGIN_RATE=$LOGIN_RATE
CPU_MODEL=$CPU_MODEL
CORES=$CORES
MEM=$MEM
DATE=$DATE
GIT=$GIT
EOF

log "gateway: pile port $PILE_PORT, API $API_PORT, data $DATA, logs $RUN"
PILEGATE_PILE_HOST=127.0.0.1 PILEGATE_PILE_PORT=$PILE_PORT PILEGATE_API_PORT=$API_PORT \
PILEGATE_DATA_DIRECTORY=$DATA PILEGATE_LOG_LEVEL=warning \
PILEGATE_FLAP_MAX_CONNECTS=1000000 PILEGATE_FLAP_MAX_CONNECTS_PER_ADDRESS=1000000 PILEGATE_MAX_CONNECTIONS_PER_ADDRESS=1000000 \
PILEGATE_ACCEPT_RATE_PER_SECOND=$ACCEPT_RATE PILEGATE_LOGIN_RATE_PER_SECOND=$LOGIN_RATE \
PILEGATE_DRAIN_WINDOW=0 \
    timeout -s TERM -k 10 "$BOUND" "$BIN" serve >"$RUN/gateway.log" 2>&1 &
GW_PID=$!

for _ in $(seq 1 300); do
    if $HELPER snapshot "$API" "$RUN/stats-before.json" 2>/dev/null; then break; fi
    kill -0 "$GW_PID" 2>/dev/null || { echo "load-test: gateway exited:"; cat "$RUN/gateway.log"; exit 1; }
    sleep 0.1
done
[ -s "$RUN/stats-before.json" ] || { echo "load-test: gateway API did not come up" >&2; exit 1; }
sleep 1
$HELPER snapshot "$API" "$RUN/stats-before.json"      # RSS before any pile connection

# start_sims WAVE DURATION: K simulator processes with N/K piles each (the last takes the rest).
start_sims() {
    local wave=$1 duration=$2 i n first
    SIM_PIDS=()
    for ((i = 0; i < SIMS; i++)); do
        n=$PER
        if [ $i -eq $((SIMS - 1)) ]; then n=$((PILES - PER * (SIMS - 1))); fi
        first=$((BASE_ID + i * PER))
        "$BIN" simulate --gateway "127.0.0.1:$PILE_PORT" --piles "$n" --guns "$GUNS" --first-id "$first" \
            --source-addresses "$SOURCES" --rate "$RATE" --duration "$duration" --heartbeat "$HEARTBEAT" \
            --report-interval 5 --threads "$SIM_THREADS" >"$RUN/sim-$wave-$i.log" 2>&1 &
        SIM_PIDS+=($!)
    done
}

# start_poller NAME MIN_LOGINS TIMEOUT: a warmed-up poller of /v1/stats that starts its clock when
# `go NAME` writes the start time; `finish_poller` waits for it and sets POLL_RESULT.
start_poller() {
    local name=$1 min_logins=$2 timeout=$3
    rm -f "$RUN/go-$name" "$RUN/go-$name.ready"
    $HELPER wait "$API" --go-file "$RUN/go-$name" --online "$PILES" --min-logins "$min_logins" \
        --timeout "$timeout" --out "$RUN/wait-$name.json" >"$RUN/poll-$name.txt" 2>&1 &
    POLLER_PID=$!
    for _ in $(seq 1 300); do [ -e "$RUN/go-$name.ready" ] && return 0; sleep 0.02; done
    echo "load-test: poller did not start" >&2
    exit 1
}
go() { date +%s.%N >"$RUN/go-$1.tmp" && mv "$RUN/go-$1.tmp" "$RUN/go-$1"; }
finish_poller() { wait "$POLLER_PID" || true; POLLER_PID=""; POLL_RESULT=$(cat "$RUN/poll-$1.txt"); }

# 1. All piles at once; time until all are logged in.
log "starting $SIMS simulators x ~$PER piles ($GUNS guns, ${HEARTBEAT} s heartbeats, $SOURCES source addresses)"
start_poller login "$PILES" "$LOGIN_WAIT"
go login
start_sims 1 $((LOGIN_WAIT + SETTLE + SOAK + 60))
finish_poller login
LOGIN_RESULT=$POLL_RESULT
$HELPER snapshot "$API" "$RUN/stats-loggedin.json"
echo "SIM_CPU_LOGIN=$($HELPER cpu "${SIM_PIDS[@]}")" >>"$RUN/run.env"
log "all logged in: $LOGIN_RESULT s after start"

# 2. Idle memory after settling, then the heartbeat soak.
sleep "$SETTLE"
$HELPER snapshot "$API" "$RUN/stats-settled.json"
SIM_CPU_A=$($HELPER cpu "${SIM_PIDS[@]}")
log "soak: $SOAK s of heartbeats"
end=$((SECONDS + SOAK))
while [ $SECONDS -lt $end ]; do
    sleep $(( end - SECONDS < 60 ? end - SECONDS : 60 ))
    python3 - "$API" <<'EOF' || true
import json, sys, urllib.request
d = json.load(urllib.request.urlopen(sys.argv[1], timeout=5))
c, p = d["counters"], d["process"]
print("  online %d, heartbeats %d, RSS %.1f MiB, CPU %.2f s" % (c["online"], c["heartbeats"], p["residentBytes"] / 1048576, p["cpuSeconds"]))
EOF
done
$HELPER snapshot "$API" "$RUN/stats-soak-end.json"
SIM_CPU_B=$($HELPER cpu "${SIM_PIDS[@]}")
echo "SIM_CPU_SOAK=$(python3 -c "print('%.2f' % ($SIM_CPU_B - $SIM_CPU_A))")" >>"$RUN/run.env"

# 3. Reconnect storm: every simulator killed at once, restarted at once.
log "reconnect storm: kill -9 all simulators, restart them"
start_poller storm \
    "$(python3 -c "import json; print(json.load(open('$RUN/stats-soak-end.json'))['counters']['loginsAccepted'] + $PILES)")" \
    "$STORM_TIMEOUT"
go storm
kill -KILL "${SIM_PIDS[@]}"
wait "${SIM_PIDS[@]}" 2>/dev/null || true
start_sims 2 $((STORM_TIMEOUT + 30))
finish_poller storm
STORM_RESULT=$POLL_RESULT
echo "SIM_CPU_STORM=$($HELPER cpu "${SIM_PIDS[@]}")" >>"$RUN/run.env"
sleep 1   # let the last closes of the old connections be counted
$HELPER snapshot "$API" "$RUN/stats-storm-end.json"
log "storm: all logged in again $STORM_RESULT s after the kill"

if [ -n "$NOTES" ]; then cp "$NOTES" "$RUN/notes.md"; fi
if [ "$DOCS" = 1 ]; then
    $HELPER report "$RUN" --docs "$ROOT/docs/BENCHMARKS.md"
else
    $HELPER report "$RUN"
fi
