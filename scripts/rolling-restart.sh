#!/usr/bin/env bash
# Rolling restart check (issue 13.5): restarting every node of a cluster in turn under load loses no
# bill and keeps every pile's pile_online/pile_offline pairing.
#
# On loopback: a nats-server (JetStream, temporary store), --nodes `pilegate serve` nodes in cluster
# mode (natsURL; own ports and data directories; drainWindow --drain-window), two backends that ack
# everything and record it (`pilegate tail --print`): "billing" (durable, transaction_record) and
# "audit" (pile_online, pile_offline), each reconnecting to the next node's API whenever its
# connection ends, and `pilegate simulate` piles spread over every node's pile port, uploading
# bills (re-sent until 0x40, never abandoned), each 0x40 appended to acked.txt as it arrives.
#
# Then each node in turn gets SIGTERM (a drained shutdown: its piles are closed over drainWindow
# and reconnect to the other nodes), is restarted on its data directory once it has exited, and
# must answer /readyz before the next one (after --pause s). Per node the script records the
# piles it held, the time from SIGTERM to ready again, and the peak logins per second on the
# other nodes while its piles moved (from /v1/stats each second).
#
# At the end the piles stop new bills and wait for the outstanding ones, and the script checks:
# every bill acked to a pile reached "billing" (acked ⊆ received), and in every contiguous stretch
# of the audit backend's connection no pile was put online twice without an offline between.
# Exits 1 on a lost bill or a broken pairing (2 on bad arguments). Loopback only, bounded in time.
#
# Usage: scripts/rolling-restart.sh [--nodes 3] [--piles 3000] [--bills-per-minute 3000]
#          [--drain-window 5] [--pause 5] [--warmup 15] [--base-port 19300] [--bin PATH]
#          [--no-build] [--keep] [--out DIR] [--wait-busy 600]
set -euo pipefail
COMMAND="scripts/rolling-restart.sh $*"
source "$(dirname "$0")/lib/harness.sh"
harness_init rolling

NODES=3 PILES=3000 BPM=3000 DRAIN=5 PAUSE=5 WARMUP=15 BASE=19300 BIN="" BUILD=1 KEEP=0 OUT="" WAIT_BUSY=600
while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) NODES=$2; shift 2 ;;
        --piles) PILES=$2; shift 2 ;;
        --bills-per-minute) BPM=$2; shift 2 ;;
        --drain-window) DRAIN=$2; shift 2 ;;
        --pause) PAUSE=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --base-port) BASE=$2; shift 2 ;;
        --bin) BIN=$2; BUILD=0; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        --wait-busy) WAIT_BUSY=$2; shift 2 ;;
        -h|--help) sed -n '2,28p' scripts/rolling-restart.sh; exit 0 ;;
        *) usage_error "unknown argument $1" ;;
    esac
done
for v in "--nodes $NODES" "--piles $PILES" "--bills-per-minute $BPM" "--drain-window $DRAIN" "--pause $PAUSE" \
    "--warmup $WARMUP" "--base-port $BASE" "--wait-busy $WAIT_BUSY"; do
    require_whole_number $v
done
[ "$NODES" -ge 2 ] || usage_error "need --nodes >= 2 (the piles of a draining node need somewhere to go)"
command -v nats-server >/dev/null || die "nats-server missing (scripts/setup.sh installs it)"

RUN=${OUT:-$(mktemp -d /tmp/pilegate-rolling.XXXXXX)}
mkdir -p "$RUN"
NATS_PORT=$BASE
pile_port() { echo $((BASE + 10 + $1)); }
api_port() { echo $((BASE + 30 + $1)); }
api() { echo "http://127.0.0.1:$(api_port "$1")"; }
PORTS=("$NATS_PORT")
GATEWAYS=""
for ((n = 1; n <= NODES; n++)); do
    PORTS+=("$(pile_port $n)" "$(api_port $n)")
    GATEWAYS+="${GATEWAYS:+,}127.0.0.1:$(pile_port $n)"
done
require_free_ports "${PORTS[@]}"
bench_lock "$WAIT_BUSY"
release_build
machine_info

SIM_DURATION=$((WARMUP + NODES * (DRAIN + PAUSE + 20) + 20))
BOUND=$((SIM_DURATION + 300))
declare -A NODE_WRAP=()
BACKEND_LOOPS=()

keep_or_remove_run() {
    if [ "$KEEP" = 1 ] || [ "$HARNESS_RC" -ne 0 ]; then log "run files kept in $RUN"; else rm -rf "$RUN"; fi
}
stop_backends() {
    [ ${#BACKEND_LOOPS[@]} -eq 0 ] || stop_processes "${BACKEND_LOOPS[@]}"
    BACKEND_LOOPS=()
    local f
    for f in "$RUN"/tail-*.pid; do
        [ -s "$f" ] || continue
        kill -TERM "$(cat "$f")" 2>/dev/null || true
    done
}
on_exit stop_backends
on_exit keep_or_remove_run

spawn_bounded "$BOUND" "$RUN/nats.log" nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$RUN/nats-store"
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done

start_node() {
    local n=$1
    HARNESS_APPEND=1 PILEGATE_NATS_URL="nats://127.0.0.1:$NATS_PORT" PILEGATE_NODE_ID="gw-$n" \
    PILEGATE_PILE_HOST=127.0.0.1 PILEGATE_PILE_PORT="$(pile_port "$n")" PILEGATE_API_HOST=127.0.0.1 \
    PILEGATE_API_PORT="$(api_port "$n")" PILEGATE_DATA_DIRECTORY="$RUN/data-$n" PILEGATE_LOG_LEVEL=notice \
    PILEGATE_DRAIN_WINDOW="$DRAIN" PILEGATE_FLAP_MAX_CONNECTS=1000000 PILEGATE_FLAP_MAX_CONNECTS_PER_ADDRESS=100000000 \
    PILEGATE_FLAP_BAN_DURATION=0 PILEGATE_MAX_CONNECTIONS_PER_ADDRESS=1000000 PILEGATE_CLUSTER_HEARTBEAT_INTERVAL=0.5 \
    PILEGATE_CLUSTER_NODE_TIMEOUT=3 \
        spawn_bounded "$BOUND" "$RUN/node-$n.log" "$BIN" serve
    NODE_WRAP[$n]=$SPAWNED
    wait_http "$(api "$n")/readyz" 60 "$SPAWNED" "$RUN/node-$n.log"
}

# A backend: `pilegate tail --print` acks and prints each event; when its connection ends it
# reconnects to the next node's API. A line "# connected N" marks each new connection.
backend_loop() {
    local service=$1 events=$2 durable=$3 n=$4
    trap 'exit 0' TERM
    while :; do
        echo "# connected $n $(date +%s.%N)" >>"$RUN/$service.jsonl"
        "$BIN" tail --api "$(api "$n")" --service "$service" --instance "$service-1" --events "$events" $durable \
            --max-in-flight 1024 --print >>"$RUN/$service.jsonl" 2>>"$RUN/$service.err" &
        echo $! >"$RUN/tail-$service.pid"
        wait $! || true
        n=$((n % NODES + 1))
        sleep 0.2
    done
}

for ((n = 1; n <= NODES; n++)); do start_node "$n"; done
log "nats-server and $NODES nodes up; run files in $RUN"
backend_loop billing transaction_record --durable 1 &
BACKEND_LOOPS+=($!); track $!
backend_loop audit pile_online,pile_offline "" 2 &
BACKEND_LOOPS+=($!); track $!
sleep 1

: >"$RUN/acked.txt"
spawn_bounded $((SIM_DURATION + 120)) "$RUN/simulate.log" "$BIN" simulate \
    --gateway "$GATEWAYS" --piles "$PILES" --guns 2 --rate 2000 --duration "$SIM_DURATION" --heartbeat 10 \
    --source-addresses 8 --bills-per-minute "$BPM" --bill-retry 5 --bill-max-sends 100000 --login-timeout 5 \
    --login-retry 2 --reconnect-min 0.5 --reconnect-max 3 --drain-timeout 60 --report-interval 5 \
    --acked-bills-out "$RUN/acked.txt" --summary-json "$RUN/sim-summary.json"
SIM_WRAP=$SPAWNED
sleep "$WARMUP"

stat_logins() { curl -fsS --max-time 1 "$(api "$1")/v1/stats" 2>/dev/null | jq -r '.counters.loginsAccepted // 0' 2>/dev/null || echo 0; }
online_on() { curl -fsS --max-time 2 "$(api "$1")/v1/stats" 2>/dev/null | jq -r '[.sessionsByLane[]?] | add // 0' 2>/dev/null || echo 0; }

echo "node piles_held seconds_to_ready peak_logins_per_s_elsewhere" >"$RUN/per-node.txt"
for ((n = 1; n <= NODES; n++)); do
    held=$(online_on "$n")
    declare -A before=()
    for ((m = 1; m <= NODES; m++)); do [ "$m" = "$n" ] || before[$m]=$(stat_logins "$m"); done
    t0=$(date +%s.%N)
    pid=$(child_pid "${NODE_WRAP[$n]}")
    kill -TERM "$pid"
    peak=0
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        for ((m = 1; m <= NODES; m++)); do
            [ "$m" = "$n" ] && continue
            now=$(stat_logins "$m")
            d=$((now - ${before[$m]}))
            before[$m]=$now
            [ "$d" -gt "$peak" ] && peak=$d
        done
    done
    wait "${NODE_WRAP[$n]}" 2>/dev/null || true
    forget "${NODE_WRAP[$n]}"
    start_node "$n"
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
    echo "gw-$n $held $secs $peak" >>"$RUN/per-node.txt"
    log "gw-$n: held $held piles, back and ready after $secs s; peak logins elsewhere $peak/s"
    sleep "$PAUSE"
done

log "restarts done; piles upload until the end of their run, then drain"
wait "$SIM_WRAP" || log "simulate exited with status $? (see $RUN/simulate.log)"
forget "$SIM_WRAP"
sleep 5
stop_backends

python3 - "$RUN" <<'PYEOF' | tee "$RUN/result.txt"
import json, sys
run = sys.argv[1]
acked = {l.strip() for l in open(f"{run}/acked.txt") if l.strip()}
received, events = set(), 0
for line in open(f"{run}/billing.jsonl"):
    if line.startswith("#") or not line.strip():
        continue
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("type") == "event" and m.get("event") == "transaction_record":
        events += 1
        s = (m.get("data") or {}).get("tradeSerial")
        if s:
            received.add(s)
# Pairing, per contiguous stretch of the audit backend's connection.
broken, stretches, state = [], 0, {}
for line in open(f"{run}/audit.jsonl"):
    if line.startswith("# connected"):
        stretches += 1
        state = {}
        continue
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("type") != "event":
        continue
    pile, ev = m.get("pile"), m.get("event")
    if ev == "pile_online":
        if state.get(pile) == "online":
            broken.append(pile)
        state[pile] = "online"
    elif ev == "pile_offline":
        state[pile] = "offline"
missing = sorted(acked - received)
print("per node (piles held, seconds from SIGTERM to ready, peak logins/s on the others):")
print(open(f"{run}/per-node.txt").read().rstrip())
print(f"bills acked to piles (0x40):              {len(acked)}")
print(f"distinct bills received by billing:       {len(received)} ({events} deliveries)")
print(f"MISSING (acked, never received):          {len(missing)}")
print(f"audit connection stretches:               {stretches}")
print(f"pile_online twice without pile_offline:   {len(broken)} {sorted(set(broken))[:5]}")
sys.exit(1 if missing or broken or not acked else 0)
PYEOF
rc=${PIPESTATUS[0]}
{ echo "COMMAND=$COMMAND"; echo "DATE=$DATE"; echo "GIT=$GIT"; echo "CPU=$CPU_MODEL, $CORES cores"; } >>"$RUN/result.txt"
if [ "$rc" -eq 0 ]; then log "PASS: no bill lost, every pile's online/offline paired across $NODES restarts"; else log "FAIL: see $RUN"; KEEP=1; fi
exit "$rc"
