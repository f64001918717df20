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
# Everything it starts is stopped on exit (scripts/lib/harness.sh), every wait has a limit, and the
# gateway itself runs under `timeout`, so nothing outlives a crashed run for long. Traffic goes to
# 127.0.0.x only. Waits (up to --wait-busy s) while another benchmark runs.
#
# Usage: scripts/load-test.sh [--piles 19000] [--sims 4] [--guns 2] [--heartbeat 10] [--soak 300]
#          [--settle 5] [--sources 16] [--sim-threads 1] [--rate 0] [--pile-port 18767] [--api-port 18780]
#          [--accept-rate 20000] [--login-rate 20000] [--login-wait 60] [--storm-timeout 120]
#          [--notes FILE] [--bin PATH] [--no-build] [--no-docs] [--wait-busy 600]
# A process may hold at most 20,000 open files here: keep --piles ≤ ~19,500 (one gateway) and
# --piles/--sims well below that.
set -euo pipefail
COMMAND="scripts/load-test.sh $*"
source "$(dirname "$0")/lib/harness.sh"
harness_init load-test
HELPER="python3 $ROOT/scripts/load-test-stats.py"

PILES=19000 SIMS=4 GUNS=2 HEARTBEAT=10 SOAK=300 SETTLE=5 SOURCES=16 SIM_THREADS=1 RATE=0
PILE_PORT=18767 API_PORT=18780 ACCEPT_RATE=20000 LOGIN_RATE=20000 LOGIN_WAIT=60 STORM_TIMEOUT=120
NOTES="" BIN="" BUILD=1 DOCS=1 WAIT_BUSY=600
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
        --bin) BIN=$2; BUILD=0; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-docs) DOCS=0; shift ;;
        --wait-busy) WAIT_BUSY=$2; shift 2 ;;
        -h|--help) sed -n '2,22p' "scripts/load-test.sh"; exit 0 ;;
        *) usage_error "unknown argument $1" ;;
    esac
done
require_whole_number --piles "$PILES"; require_whole_number --sims "$SIMS"; require_whole_number --soak "$SOAK"
require_whole_number --settle "$SETTLE"; require_whole_number --wait-busy "$WAIT_BUSY"
if [ "$PILES" -lt 1 ] || [ "$SIMS" -lt 1 ] || [ "$PILES" -gt 19500 ]; then
    usage_error "need 1 <= --piles <= 19500 (20,000 open files per process) and --sims >= 1"
fi

API="http://127.0.0.1:$API_PORT/v1/stats"
RUN=$(mktemp -d /tmp/pilegate-loadtest.XXXXXX)   # logs and snapshots; kept for inspection
DATA=$(mktemp -d /tmp/pilegate-loadtest-data.XXXXXX)
remove_on_exit "$DATA"
GW_PID=""        # the `timeout` wrapper around the gateway
SIM_PIDS=()
POLLER_PID=""

require_free_ports "$PILE_PORT" "$API_PORT"
bench_lock "$WAIT_BUSY"
release_build
machine_info
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
    spawn_bounded "$BOUND" "$RUN/gateway.log" "$BIN" serve
GW_PID=$SPAWNED

wait_http "$API" 30 "$GW_PID" "$RUN/gateway.log"
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
        spawn "$RUN/sim-$wave-$i.log" "$BIN" simulate --gateway "127.0.0.1:$PILE_PORT" --piles "$n" --guns "$GUNS" \
            --first-id "$first" --source-addresses "$SOURCES" --rate "$RATE" --duration "$duration" \
            --heartbeat "$HEARTBEAT" --report-interval 5 --threads "$SIM_THREADS"
        SIM_PIDS+=("$SPAWNED")
    done
}

# start_poller NAME MIN_LOGINS TIMEOUT: a warmed-up poller of /v1/stats that starts its clock when
# `go NAME` writes the start time; `finish_poller` waits for it and sets POLL_RESULT.
start_poller() {
    local name=$1 min_logins=$2 timeout=$3
    rm -f "$RUN/go-$name" "$RUN/go-$name.ready"
    spawn "$RUN/poll-$name.txt" $HELPER wait "$API" --go-file "$RUN/go-$name" --online "$PILES" \
        --min-logins "$min_logins" --timeout "$timeout" --out "$RUN/wait-$name.json"
    POLLER_PID=$SPAWNED
    for _ in $(seq 1 300); do [ -e "$RUN/go-$name.ready" ] && return 0; sleep 0.02; done
    die "poller did not start"
}
go() { date +%s.%N >"$RUN/go-$1.tmp" && mv "$RUN/go-$1.tmp" "$RUN/go-$1"; }
finish_poller() { wait "$POLLER_PID" || true; forget "$POLLER_PID"; POLLER_PID=""; POLL_RESULT=$(cat "$RUN/poll-$1.txt"); }

# 1. All piles at once; time until all are logged in.
log "starting $SIMS simulators x ~$PER piles ($GUNS guns, ${HEARTBEAT} s heartbeats, $SOURCES source addresses)"
start_poller login "$PILES" "$LOGIN_WAIT"
go login
start_sims 1 $((LOGIN_WAIT + SETTLE + SOAK + 60))
finish_poller login
LOGIN_RESULT=$POLL_RESULT
$HELPER snapshot "$API" "$RUN/stats-loggedin.json"
echo "SIM_CPU_LOGIN=$(cpu_seconds "${SIM_PIDS[@]}")" >>"$RUN/run.env"
log "all logged in: $LOGIN_RESULT s after start"

# 2. Idle memory after settling, then the heartbeat soak.
sleep "$SETTLE"
$HELPER snapshot "$API" "$RUN/stats-settled.json"
SIM_CPU_A=$(cpu_seconds "${SIM_PIDS[@]}")
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
SIM_CPU_B=$(cpu_seconds "${SIM_PIDS[@]}")
echo "SIM_CPU_SOAK=$(python3 -c "print('%.2f' % ($SIM_CPU_B - $SIM_CPU_A))")" >>"$RUN/run.env"

# 3. Reconnect storm: every simulator killed at once, restarted at once.
log "reconnect storm: kill -9 all simulators, restart them"
start_poller storm \
    "$(python3 -c "import json; print(json.load(open('$RUN/stats-soak-end.json'))['counters']['loginsAccepted'] + $PILES)")" \
    "$STORM_TIMEOUT"
go storm
kill -KILL "${SIM_PIDS[@]}"
wait "${SIM_PIDS[@]}" 2>/dev/null || true
forget "${SIM_PIDS[@]}"
start_sims 2 $((STORM_TIMEOUT + 30))
finish_poller storm
STORM_RESULT=$POLL_RESULT
echo "SIM_CPU_STORM=$(cpu_seconds "${SIM_PIDS[@]}")" >>"$RUN/run.env"
sleep 1   # let the last closes of the old connections be counted
$HELPER snapshot "$API" "$RUN/stats-storm-end.json"
log "storm: all logged in again $STORM_RESULT s after the kill"

if [ -n "$NOTES" ]; then cp "$NOTES" "$RUN/notes.md"; fi
if [ "$DOCS" = 1 ]; then
    $HELPER report "$RUN" --docs "$ROOT/docs/BENCHMARKS.md"
else
    $HELPER report "$RUN"
fi
