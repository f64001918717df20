#!/usr/bin/env bash
# Cluster load test (issue 11.7): a nats-server, N `pilegate serve` nodes in cluster mode and one
# `pilegate simulate --workers W --gateway <every node>` run, all on loopback on this machine.
#
# Timeline (seconds from the simulate start; one simulate run, piles stay connected throughout):
#   0 … login-wait          piles connect at --rate over all nodes (round-robin); time to all logged in
#   + settle, + idle        no backend subscribed: gateway CPU per heartbeat (beside the single-node
#                           figure --single-node-us), RSS per pile per node, the NATS server's RSS
#   + warmup, + measure     2 `pilegate tail` subscribers (service bench, instances b1 b2, events
#                           heartbeat,realtime_data) on node 1 get the events of piles on every node:
#                           events/s and pile -> backend latency p50/p99 (tail arrival - receivedAt)
#   + bill-seconds (+ drain) open-loop bills at --bill-rate/s across the fleet: durable bills/s (0x40s
#                           per second from the load's start to the last 0x40) and the 0x40 latency
# Throughout: --charging of the piles charge by themselves (sessions of --charging-session s, a
# charging 0x13 every 15 s, a bill at the end) and a durable `pilegate tail --service billing` on
# node 1 takes the bills.
#
# --standalone runs the same load with the nodes out of cluster mode (no PILEGATE_NATS_URL): the
# baseline for what the cluster costs (CPU per heartbeat, bills/s through SQLite instead of
# JetStream); the subscribers on node 1 then see only node 1's piles.
#
# --nats-nice N starts the nats-server at that nice value (negative: ahead of the other processes).
# In production NATS has CPUs of its own; here it shares two cores with six nodes, six simulate
# workers and the subscribers, and Linux gives each runnable thread a fair share, so the one
# server that every node's bills pass through gets about a fifteenth of them.
# --nats-procs N caps the server's Go scheduler at N threads (GOMAXPROCS); unset, it is the
# number of cores.
#
# Everything started is stopped on exit (scripts/lib/harness.sh); each process runs under `timeout`
# (the whole run is bounded by --max-seconds), each wait has a limit, traffic stays on 127.0.0.x,
# and the data directories (node SQLite files, the JetStream store) are removed. Waits (up to
# --wait-busy s) while another benchmark runs. The figures are printed as a markdown table and kept
# in the run directory (logs, snapshots, report.md).
#
# Usage: scripts/cluster-load.sh [--nodes 6] [--piles 96000] [--guns 2] [--heartbeat 10]
#          [--charging 0.2] [--charging-session 60] [--workers auto] [--sources auto] [--rate 8000]
#          [--login-wait 45] [--settle 5] [--idle 20] [--warmup 5] [--measure 40] [--subscribers 2]
#          [--bill-rate 6000] [--bill-seconds 20] [--drain 20] [--max-seconds 600]
#          [--base-port 19100] [--nats-port 19090] [--single-node-us 16.2]
#          [--bin PATH] [--no-build] [--wait-busy 600] [--standalone] [--nats-nice 0]
#          [--nats-procs N]
# A process may hold at most 20,000 open files here: each node takes piles/nodes (≤ 19,000) and
# each simulate worker piles/workers (auto: ≤ 16,000) connections.
set -euo pipefail
COMMAND="scripts/cluster-load.sh $*"
source "$(dirname "$0")/lib/harness.sh"
harness_init cluster-load
HELPER="python3 $ROOT/scripts/cluster-load-stats.py"

NODES=6 PILES=96000 GUNS=2 HEARTBEAT=10 CHARGING=0.2 CHARGING_SESSION=60 WORKERS=auto SOURCES=auto RATE=8000
LOGIN_WAIT=45 SETTLE=5 IDLE=20 WARMUP=5 MEASURE=40 SUBS=2 BILL_RATE=6000 BILL_SECONDS=20 DRAIN=20
MAX_SECONDS=600 BASE_PORT=19100 NATS_PORT=19090 SINGLE_NODE_US=16.2 BIN="" BUILD=1 WAIT_BUSY=600 STANDALONE=0 NATS_NICE=0 NATS_PROCS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) NODES=$2; shift 2 ;;
        --piles) PILES=$2; shift 2 ;;
        --guns) GUNS=$2; shift 2 ;;
        --heartbeat) HEARTBEAT=$2; shift 2 ;;
        --charging) CHARGING=$2; shift 2 ;;
        --charging-session) CHARGING_SESSION=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --sources) SOURCES=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --login-wait) LOGIN_WAIT=$2; shift 2 ;;
        --settle) SETTLE=$2; shift 2 ;;
        --idle) IDLE=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --measure) MEASURE=$2; shift 2 ;;
        --subscribers) SUBS=$2; shift 2 ;;
        --bill-rate) BILL_RATE=$2; shift 2 ;;
        --bill-seconds) BILL_SECONDS=$2; shift 2 ;;
        --drain) DRAIN=$2; shift 2 ;;
        --max-seconds) MAX_SECONDS=$2; shift 2 ;;
        --base-port) BASE_PORT=$2; shift 2 ;;
        --nats-port) NATS_PORT=$2; shift 2 ;;
        --single-node-us) SINGLE_NODE_US=$2; shift 2 ;;
        --bin) BIN=$2; BUILD=0; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --wait-busy) WAIT_BUSY=$2; shift 2 ;;
        --standalone) STANDALONE=1; shift ;;
        --nats-nice) NATS_NICE=$2; shift 2 ;;
        --nats-procs) NATS_PROCS=$2; shift 2 ;;
        -h|--help) sed -n '2,43p' scripts/cluster-load.sh; exit 0 ;;
        *) usage_error "unknown argument $1" ;;
    esac
done
for v in NODES PILES GUNS LOGIN_WAIT SETTLE IDLE WARMUP MEASURE SUBS BILL_RATE BILL_SECONDS DRAIN MAX_SECONDS \
    BASE_PORT NATS_PORT RATE WAIT_BUSY; do
    require_whole_number "--$(echo "$v" | tr 'A-Z_' 'a-z-')" "${!v}"
done
if [ "$NODES" -lt 1 ] || [ "$NODES" -gt 64 ]; then usage_error "--nodes must be 1...64"; fi
if [ "$SUBS" -lt 1 ] || [ "$SUBS" -gt 4 ]; then usage_error "--subscribers must be 1...4"; fi
PER_NODE=$(( (PILES + NODES - 1) / NODES ))
if [ "$PER_NODE" -gt 19000 ]; then usage_error "$PER_NODE piles per node: at most 19,000 (20,000 open files per process); add --nodes"; fi
if [ "$WORKERS" = auto ]; then WORKERS=$(( (PILES + 15999) / 16000 )); [ "$WORKERS" -ge 2 ] || WORKERS=2; fi
require_whole_number --workers "$WORKERS"
# At most 6,000 piles per source address: the kernel's search for a free local port at bind
# grows with the ports already bound to the address (at 14,000 per address in the 300,000-pile
# run it was the top kernel symbol).
if [ "$SOURCES" = auto ]; then SOURCES=$(( (PILES + 5999) / 6000 )); [ "$SOURCES" -ge 16 ] || SOURCES=16; fi
require_whole_number --sources "$SOURCES"
[ "$SOURCES" -le 254 ] || usage_error "--sources must be <= 254"
command -v nats-server >/dev/null || die "nats-server is missing (scripts/setup.sh installs it)"

RUN=$(mktemp -d /tmp/pilegate-clusterload.XXXXXX)   # logs, snapshots, report; kept for inspection
DATA=$(mktemp -d /tmp/pilegate-clusterload-data.XXXXXX)
remove_on_exit "$DATA"
NATS_MON=$((NATS_PORT + 1))
PORTS=("$NATS_PORT" "$NATS_MON")
for ((i = 1; i <= NODES; i++)); do PORTS+=($((BASE_PORT + i)) $((BASE_PORT + 100 + i))); done
require_free_ports "${PORTS[@]}"
bench_lock "$WAIT_BUSY"
OTHERS_AT_START=$OTHERS
release_build
machine_info
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# The schedule, in seconds from the simulate start.
IDLE_AT=$((LOGIN_WAIT + SETTLE))
TAILS_AT=$((IDLE_AT + IDLE))
LAT_AT=$((TAILS_AT + WARMUP))
BILLS_AT=$((LAT_AT + MEASURE + 4))
SIM_DURATION=$((BILLS_AT + BILL_SECONDS))
NEEDED=$((SIM_DURATION + DRAIN + 90))
[ "$NEEDED" -le "$MAX_SECONDS" ] || usage_error "the schedule needs about $NEEDED s; raise --max-seconds or shorten the phases"
BOUND=$MAX_SECONDS   # every process dies by itself after this, even if this script is killed

cat >"$RUN/run.env" <<ENV
COMMAND=$COMMAND
NODES=$NODES
PILES=$PILES
GUNS=$GUNS
HEARTBEAT=$HEARTBEAT
CHARGING=$CHARGING
WORKERS=$WORKERS
SOURCES=$SOURCES
RATE=$RATE
BILL_RATE=$BILL_RATE
SINGLE_NODE_US=$SINGLE_NODE_US
STANDALONE=$STANDALONE
CPU_MODEL=$CPU_MODEL
CORES=$CORES
MEM=$MEM
DATE=$DATE
GIT=$GIT
LOAD_START=$LOAD_START
OTHERS=$OTHERS_AT_START
ENV

log "nats-server on $NATS_PORT (monitor $NATS_MON), store $DATA/nats; logs in $RUN"
spawn_bounded "$BOUND" "$RUN/nats.log" env ${NATS_PROCS:+GOMAXPROCS=$NATS_PROCS} nice -n "$NATS_NICE" nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MON" -sd "$DATA/nats"
NATS_WRAPPER=$SPAWNED
wait_http "http://127.0.0.1:$NATS_MON/healthz" 20 "$NATS_WRAPPER" "$RUN/nats.log"

# A pile is dropped after 3.5 heartbeat intervals of silence (35 s, the default, at 10 s heartbeats).
LIVENESS=$(python3 -c "print($HEARTBEAT * 3.5)")
NODE_WRAPPERS=() APIS=() GATEWAYS=()
NATS_URL=nats://127.0.0.1:$NATS_PORT
[ "$STANDALONE" = 0 ] || NATS_URL=""   # the node's setting, empty: not in cluster mode
for ((i = 1; i <= NODES; i++)); do
    mkdir -p "$DATA/node-$i"
    PILEGATE_NATS_URL=$NATS_URL PILEGATE_NODE_ID=cl-$i PILEGATE_CLUSTER_NAME=clusterload \
    PILEGATE_PILE_HOST=127.0.0.1 PILEGATE_PILE_PORT=$((BASE_PORT + i)) PILEGATE_API_PORT=$((BASE_PORT + 100 + i)) \
    PILEGATE_DATA_DIRECTORY=$DATA/node-$i PILEGATE_LOG_LEVEL=${NODE_LOG_LEVEL:-warning} \
    PILEGATE_FLAP_MAX_CONNECTS=1000000 PILEGATE_FLAP_MAX_CONNECTS_PER_ADDRESS=1000000 \
    PILEGATE_MAX_CONNECTIONS_PER_ADDRESS=1000000 PILEGATE_DRAIN_WINDOW=0 PILEGATE_LIVENESS_TIMEOUT=$LIVENESS \
        spawn_bounded "$BOUND" "$RUN/node-$i.log" "$BIN" serve
    NODE_WRAPPERS+=("$SPAWNED")
    APIS+=("http://127.0.0.1:$((BASE_PORT + 100 + i))")
    GATEWAYS+=("127.0.0.1:$((BASE_PORT + i))")
done
for ((i = 0; i < NODES; i++)); do
    wait_http "${APIS[$i]}/v1/stats" 60 "${NODE_WRAPPERS[$i]}" "$RUN/node-$((i + 1)).log"
done
NODE_PIDS=$(for w in "${NODE_WRAPPERS[@]}"; do child_pid "$w"; done | paste -sd,)
API_LIST=$(IFS=,; echo "${APIS[*]}")
GATEWAY_LIST=$(IFS=,; echo "${GATEWAYS[*]}")

# The cluster is formed when node 1 lists every node.
members=0
[ "$STANDALONE" = 0 ] || members=$NODES
for _ in $(seq 1 60); do
    [ "$STANDALONE" = 0 ] || break
    members=$(curl -fsS --max-time 5 "${APIS[0]}/v1/stats" 2>/dev/null | python3 -c \
        "import json,sys; c=(json.load(sys.stdin).get('extensions') or {}).get('cluster') or {}; print(len(c.get('nodes') or c.get('members') or []))" \
        2>/dev/null || echo 0)
    [ "$members" -ge "$NODES" ] && break
    sleep 0.5
done
if [ "$STANDALONE" = 0 ]; then log "node 1 sees $members of $NODES nodes"; else log "standalone: $NODES nodes out of cluster mode"; fi

TAIL_PIDS=()
spawn "$RUN/tail-billing.log" "$BIN" tail --api "${APIS[0]}" --service billing --instance bill1 --events transaction_record \
    --durable --max-in-flight 4096 --duration $((SIM_DURATION + DRAIN + 5)) --stats-interval 10
TAIL_PIDS+=("$SPAWNED")
snapshot() {  # snapshot NAME
    $HELPER snapshot "$RUN/snap-$1.json" --apis "$API_LIST" --nodes "$NODE_PIDS" --nats-monitor "http://127.0.0.1:$NATS_MON" \
        --nats "$(child_pid "$NATS_WRAPPER")" --sims "${SIM_PID:-}" --tails "$(IFS=,; echo "${TAIL_PIDS[*]}")" || log "snapshot $1 failed"
}
SIM_PID=""
sleep 1
snapshot 0-empty

log "simulate: $PILES piles x $GUNS guns @ ${HEARTBEAT}s over $NODES nodes, $WORKERS workers, $SOURCES source addresses, rate $RATE/s, $CHARGING charging"
T0=$SECONDS
spawn_bounded "$BOUND" "$RUN/simulate.log" "$BIN" simulate --workers "$WORKERS" --gateway "$GATEWAY_LIST" --piles "$PILES" \
    --guns "$GUNS" --heartbeat "$HEARTBEAT" --source-addresses "$SOURCES" --rate "$RATE" --threads 1 \
    --charging "$CHARGING" --charging-session "$CHARGING_SESSION" --bills-after "$BILLS_AT" \
    --bills-per-minute $((BILL_RATE * 60)) --duration "$SIM_DURATION" --drain-timeout "$DRAIN" --report-interval 5 \
    --summary-json "$RUN/simulate-summary.json"
SIM_WRAPPER=$SPAWNED
SIM_PID=$(child_pid "$SIM_WRAPPER")

# until T: sleeps until T seconds after the simulate start; dies if simulate has ended.
until_t() {
    while [ $((SECONDS - T0)) -lt "$1" ]; do
        kill -0 "$SIM_WRAPPER" 2>/dev/null || { tail -n 30 "$RUN/simulate.log" >&2; die "simulate ended early"; }
        sleep 0.5
    done
}
until_t "$IDLE_AT"
grep -h "all .* piles logged in after" "$RUN/simulate.log" | tail -n1 | sed 's/^/  /' || log "not every pile is logged in yet"
snapshot 1-settled
until_t "$TAILS_AT"
snapshot 2-idle-end
names=(b1 b2 b3 b4)
for ((i = 0; i < SUBS; i++)); do
    spawn "$RUN/tail-${names[$i]}.log" "$BIN" tail --api "${APIS[0]}" --service bench --instance "${names[$i]}" \
        --events heartbeat,realtime_data --max-in-flight 1024 --warmup "$WARMUP" --duration $((WARMUP + MEASURE + 3)) --stats-interval 10
    TAIL_PIDS+=("$SPAWNED")
done
# The subscribers run 3 s past the window, so they are still there for its closing snapshot
# (their CPU is read from /proc), and end before the bills start.
until_t "$LAT_AT"
snapshot 3-latency-start
until_t $((LAT_AT + MEASURE))
snapshot 4-latency-end
log "bills: $BILL_RATE/s for $BILL_SECONDS s from t=$BILLS_AT s"
deadline=$((T0 + SIM_DURATION + DRAIN + 80))
while kill -0 "$SIM_WRAPPER" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
snapshot 5-bills-end
wait "$SIM_WRAPPER" && SIM_STATUS=0 || SIM_STATUS=$?
forget "$SIM_WRAPPER"
log "simulate exited with status $SIM_STATUS"
sed -n '/^summary after/,$p' "$RUN/simulate.log" | sed 's/^/  /'
echo "LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RUN/run.env"
deadline=$((SECONDS + 40))   # the subscribers end by themselves (--duration) and print their summaries
for pid in "${TAIL_PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
done
stop_processes "${TAIL_PIDS[@]}"
$HELPER report "$RUN" | tee "$RUN/report.md"
