#!/usr/bin/env bash
# Rolling restart check (issue 13.5): restarting every node of a cluster in turn under load loses no
# bill and keeps every pile's pile_online/pile_offline pairing.
#
# On loopback: a nats-server (JetStream, temporary store), --nodes `pilegate serve` nodes in cluster
# mode (natsURL; own ports and data directories; drainWindow --drain-window), backends that ack
# everything and record it (`pilegate tail --print`): "billing" (durable: transaction_record,
# command_result, command_expired), reconnecting to the next node's API whenever its connection
# ends (durable events reach it from every node through the cluster's event stream), and one
# "audit" instance per node (pile_online, pile_offline: not durable; each event reaches one audit
# instance, on whichever node the pile's hash picks, as backends see one gateway — docs/CLUSTER.md),
# reconnecting to its own node; and `pilegate simulate`
# piles spread over every node's pile port with --failover (a reconnect goes to another node, as
# through a load balancer), uploading bills (re-sent until 0x40, never abandoned), each 0x40
# appended to acked.txt as it arrives.
#
# Then each node in turn gets SIGTERM (a drained shutdown: its piles are closed over drainWindow
# and reconnect to the other nodes), is restarted on its data directory once it has exited, and
# must answer /readyz before the next one (after --pause s). Per node the script reports the
# piles it held at SIGTERM, the seconds from SIGTERM to exited (its drain) and to ready again, the
# logins on the other nodes until the next node's SIGTERM, and their peak rate on one node (from
# every node's /v1/stats, sampled every 0.5 s).
#
# Queued commands: just before each node's SIGTERM, two `time_sync` with deliverWithin are queued
# on that node for piles that are offline (outside the fleet: 320107000000N1, 320107000000N2); each
# then logs in on the previous node (a 1-pile `pilegate simulate`): the first right after the
# SIGTERM (the draining node must deliver it across nodes), the second once the node has exited
# (the command waits in its SQLite and must be delivered across nodes once it is back). The
# "billing" backend also takes command_result and command_expired (durable).
#
# At the end the piles stop new bills and wait for the outstanding ones, and the script checks:
# every bill acked to a pile reached "billing" (acked ⊆ received), every queued command has a
# command_result with outcome "replied", and no pile was put online twice without an offline
# between: per contiguous stretch of each node's audit connection, and across the cluster (every
# node's audit events merged by receivedAt). Exits 1 on a lost bill, an undelivered command or a
# broken pairing, and on a run whose load did not happen (under 90 % of the piles online at the
# first SIGTERM, or the simulator not ending by itself: a machine too busy for the run); 2 on bad
# arguments. Loopback only, bounded in time.
#
# Usage: scripts/rolling-restart.sh [--nodes 3] [--piles 3000] [--bills-per-minute 3000]
#          [--drain-window 5] [--pause 5] [--warmup 30] [--base-port 19300] [--bin PATH]
#          [--no-build] [--keep] [--out DIR] [--wait-busy 600]
set -euo pipefail
COMMAND="scripts/rolling-restart.sh $*"
source "$(dirname "$0")/lib/harness.sh"
harness_init rolling

NODES=3 PILES=3000 BPM=3000 DRAIN=5 PAUSE=5 WARMUP=30 BASE=19300 BIN="" BUILD=1 KEEP=0 OUT="" WAIT_BUSY=600
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
        -h|--help) sed -n '2,38p' scripts/rolling-restart.sh; exit 0 ;;
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

# A backend: `pilegate tail --print` acks and prints each event into NAME.jsonl; when its
# connection ends it reconnects to the next node's API (move=1) or to the same node (move=0). A
# line "# connected N" marks each new connection.
backend_loop() {
    local name=$1 service=$2 events=$3 durable=$4 n=$5 move=$6
    trap 'exit 0' TERM
    while :; do
        echo "# connected $n $(date +%s.%N)" >>"$RUN/$name.jsonl"
        "$BIN" tail --api "$(api "$n")" --service "$service" --instance "$name" --events "$events" $durable \
            --max-in-flight 1024 --print >>"$RUN/$name.jsonl" 2>>"$RUN/$name.err" &
        echo $! >"$RUN/tail-$name.pid"
        wait $! || true
        [ "$move" = 0 ] || n=$((n % NODES + 1))
        sleep 0.2
    done
}

for ((n = 1; n <= NODES; n++)); do start_node "$n"; done
log "nats-server and $NODES nodes up; run files in $RUN"
backend_loop billing billing transaction_record,command_result,command_expired --durable 1 1 &
BACKEND_LOOPS+=($!); track $!
for ((n = 1; n <= NODES; n++)); do
    backend_loop "audit-$n" audit pile_online,pile_offline "" "$n" 0 &
    BACKEND_LOOPS+=($!); track $!
done
sleep 1

: >"$RUN/acked.txt"
spawn_bounded $((SIM_DURATION + 120)) "$RUN/simulate.log" "$BIN" simulate \
    --gateway "$GATEWAYS" --failover --piles "$PILES" --guns 2 --rate 2000 --duration "$SIM_DURATION" --heartbeat 10 \
    --source-addresses 8 --bills-per-minute "$BPM" --bill-retry 5 --bill-max-sends 100000 --login-timeout 5 \
    --login-retry 2 --reconnect-min 0.5 --reconnect-max 3 --drain-timeout 60 --report-interval 5 \
    --acked-bills-out "$RUN/acked.txt" --summary-json "$RUN/sim-summary.json"
SIM_WRAP=$SPAWNED
# Every node's accepted logins and open sessions, sampled every 0.5 s for the whole run (the
# per-node figures are computed from it at the end).
sampler() {
    trap 'exit 0' TERM
    local m line
    while :; do
        for ((m = 1; m <= NODES; m++)); do
            line=$(curl -fsS --max-time 1 "$(api "$m")/v1/stats" 2>/dev/null |
                jq -r '"\(.counters.loginsAccepted // 0) \([.sessionsByLane[]?] | add // 0)"' 2>/dev/null) || continue
            echo "$(date +%s.%N) $m $line" >>"$RUN/samples.txt"
        done
        sleep 0.5
    done
}
sampler &
BACKEND_LOOPS+=($!); track $!
SIM_T0=$(date +%s)
LATE_WRAPS=()
: >"$RUN/queued.txt"
sleep "$WARMUP"

online_on() { curl -fsS --max-time 2 "$(api "$1")/v1/stats" 2>/dev/null | jq -r '[.sessionsByLane[]?] | add // 0' 2>/dev/null || echo 0; }


# late_pile ID N: pile ID (outside the fleet) logs in on the node before node N, until the end.
late_pile() {
    local prev=$(( ($2 + NODES - 2) % NODES + 1 )) secs
    secs=$((SIM_DURATION - ($(date +%s) - SIM_T0)))
    [ "$secs" -ge 10 ] || secs=10
    spawn_bounded $((SIM_DURATION + 120)) "$RUN/late-$1.log" "$BIN" simulate --gateway "127.0.0.1:$(pile_port "$prev")" \
        --piles 1 --first-id "$1" --guns 1 --heartbeat 10 --reconnect-min 0.5 --reconnect-max 3 --report-interval 30 \
        --duration "$secs"
    LATE_WRAPS+=("$SPAWNED")
}

: >"$RUN/cycles.txt"
for ((n = 1; n <= NODES; n++)); do
    held=$(online_on "$n")
    # Two commands wait on this node for offline piles: one pile logs in elsewhere while the
    # node drains, the other only once it has exited (the command is then in its SQLite only).
    for k in 1 2; do
        late=$((32010700000000 + 10 * n + k))
        qid=$(curl -fsS --max-time 10 -X POST -H 'content-type: application/json' -d '{}' \
            "$(api "$n")/v1/piles/$late/commands/time_sync?deliverWithin=600" | jq -r '.id // empty' || true)
        [ -n "$qid" ] || die "gw-$n did not queue a command for the offline pile $late"
        echo "$qid $late gw-$n $([ $k = 1 ] && echo while-draining || echo while-down)" >>"$RUN/queued.txt"
    done
    t0=$(date +%s.%N)
    pid=$(child_pid "${NODE_WRAP[$n]}")
    kill -TERM "$pid"
    late_pile $((32010700000000 + 10 * n + 1)) "$n"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    t_exit=$(date +%s.%N)
    late_pile $((32010700000000 + 10 * n + 2)) "$n"
    wait "${NODE_WRAP[$n]}" 2>/dev/null || true
    forget "${NODE_WRAP[$n]}"
    start_node "$n"
    t_ready=$(date +%s.%N)
    echo "$n $held $t0 $t_exit $t_ready" >>"$RUN/cycles.txt"
    log "gw-$n: held $held piles; exited $(awk -v a="$t0" -v b="$t_exit" 'BEGIN {printf "%.1f", b - a}') s after SIGTERM, ready again $(awk -v a="$t0" -v b="$t_ready" 'BEGIN {printf "%.1f", b - a}') s after it"
    sleep "$PAUSE"
done

log "restarts done; piles upload until the end of their run, then drain"
SIM_RC=0
wait "$SIM_WRAP" || SIM_RC=$?
[ "$SIM_RC" = 0 ] || log "simulate exited with status $SIM_RC (see $RUN/simulate.log)"
forget "$SIM_WRAP"
for w in "${LATE_WRAPS[@]}"; do wait "$w" || true; forget "$w"; done
sleep 5
stop_backends

python3 - "$RUN" "$SIM_RC" "$PILES" <<'PYEOF' | tee "$RUN/result.txt"
import json, sys
run, sim_rc, piles = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
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
# Queued commands: each needs a command_result that says the pile replied.
queued = [l.split() for l in open(f"{run}/queued.txt") if l.strip()]
outcomes = {}
for line in open(f"{run}/billing.jsonl"):
    if line.startswith("#") or not line.strip():
        continue
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("type") == "event" and m.get("event") in ("command_result", "command_expired"):
        d = m.get("data") or {}
        outcomes.setdefault(d.get("id"), []).append(d.get("outcome", "expired"))
undelivered = [q for q in queued if "replied" not in outcomes.get(q[0], [])]
# Pairing: per contiguous stretch of each node's audit connection, and across the cluster
# (every node's events merged by receivedAt, then per pile in that order).
import glob
broken, stretches, merged = [], 0, []
for path in sorted(glob.glob(f"{run}/audit-*.jsonl")):
    state = {}
    for line in open(path):
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
        merged.append((m.get("receivedAt", ""), ev == "pile_online", pile, m.get("node")))
        if ev == "pile_online":
            if state.get(pile) == "online":
                broken.append(pile)
            state[pile] = "online"
        elif ev == "pile_offline":
            state[pile] = "offline"
merged.sort(key=lambda e: (e[0], e[1]))  # same instant: the offline first
across, moves, last = [], 0, {}
for at, online, pile, node in merged:
    prev = last.get(pile)
    if online:
        if prev and prev[0]:
            across.append(pile)
        elif prev and prev[1] != node:
            moves += 1
    last[pile] = (online, node)
# Per node: piles held at SIGTERM; seconds to exit (the drain) and to ready again; logins on the
# other nodes from SIGTERM until the next node's SIGTERM, and their peak rate per node (between
# two samples, ~0.5 s apart).
samples = {}
for line in open(f"{run}/samples.txt"):
    p = line.split()
    if len(p) == 4:
        samples.setdefault(int(p[1]), []).append((float(p[0]), int(p[2])))
cycles = [l.split() for l in open(f"{run}/cycles.txt") if l.strip()]
per_node = []
for i, (n, held, t0, t_exit, t_ready) in enumerate(cycles):
    n, t0, t_exit, t_ready = int(n), float(t0), float(t_exit), float(t_ready)
    t_end = float(cycles[i + 1][2]) if i + 1 < len(cycles) else t_ready + 10
    logins, peak = 0, 0.0
    for m, series in samples.items():
        if m == n:
            continue
        window = [s for s in series if t0 - 1 <= s[0] <= t_end]
        for (ta, a), (tb, b) in zip(window, window[1:]):
            if tb > t0 and b >= a and tb - ta > 0.05:
                peak = max(peak, (b - a) / (tb - ta))
        before = [s for s in series if s[0] <= t0]
        after = [s for s in series if s[0] <= t_end]
        if before and after:
            logins += after[-1][1] - before[-1][1]
    per_node.append((f"gw-{n}", int(held), t_exit - t0, t_ready - t0, logins, peak))
missing = sorted(acked - received)
print("node   piles held   SIGTERM->exited   SIGTERM->ready   logins on the others   peak logins/s on one other node")
for name, held, exited, ready, logins, peak in per_node:
    print(f"{name:6} {held:10} {exited:15.1f} s {ready:14.1f} s {logins:20} {peak:22.0f}")
# Piles online on all nodes at the first SIGTERM (the sessions column of the samples).
online_first = 0
sessions = {}
for line in open(f"{run}/samples.txt"):
    p = line.split()
    if len(p) == 4:
        sessions.setdefault(int(p[1]), []).append((float(p[0]), int(p[3])))
if cycles:
    t_first = float(cycles[0][2])
    online_first = sum((lambda b: b[-1][1] if b else 0)([x for x in series if x[0] <= t_first]) for series in sessions.values())
print(f"piles online at the first SIGTERM:        {online_first} of {piles}")
print(f"simulate exit status:                     {sim_rc}")
print(f"bills acked to piles (0x40):              {len(acked)}")
print(f"distinct bills received by billing:       {len(received)} ({events} deliveries)")
print(f"MISSING (acked, never received):          {len(missing)}")
print(f"commands queued for offline piles:        {len(queued)}")
print(f"  delivered (command_result replied):     {len(queued) - len(undelivered)}")
print(f"  NOT delivered:                          {len(undelivered)} {[(q[0], q[3], outcomes.get(q[0])) for q in undelivered][:6]}")
print(f"audit connection stretches (all nodes):   {stretches}")
print(f"pile_online/pile_offline events seen:     {len(merged)}")
print(f"offline on one node, then online on another: {moves}")
print(f"pile_online twice without pile_offline:   {len(broken)} within a stretch, {len(across)} across the cluster {sorted(set(broken + across))[:5]}")
# A run whose load did not happen as planned proves nothing: the fleet must have been (nearly)
# all online before the restarts and the simulator must have ended by itself.
invalid = sim_rc != 0 or online_first < 0.9 * piles
if invalid:
    print("INVALID RUN: the simulator did not end normally or under 90 % of the piles were online at the first SIGTERM")
sys.exit(1 if missing or broken or across or undelivered or not acked or not queued or invalid else 0)
PYEOF
rc=${PIPESTATUS[0]}
{ echo "COMMAND=$COMMAND"; echo "DATE=$DATE"; echo "GIT=$GIT"; echo "CPU=$CPU_MODEL, $CORES cores"; } >>"$RUN/result.txt"
if [ "$rc" -eq 0 ]; then log "PASS: no bill lost, every queued command delivered, every pile's online/offline paired across $NODES restarts"; else log "FAIL: see $RUN"; KEEP=1; fi
exit "$rc"
