#!/usr/bin/env bash
# Outbox chaos check (issue 5): every bill a pile got 0x40 for reaches the backend, across kill -9.
#
# On loopback: one `pilegate serve` (own ports, a fresh data directory), a backend subscriber
# (`pilegate tail --print` as service "billing", instance b1, restarted in a loop whenever its
# connection ends) that acks every transaction_record and records it, and `pilegate simulate`
# piles uploading bills continuously (re-sent every --bill-retry s until 0x40, also after
# reconnecting; never abandoned: --bill-max-sends 100000). Each 0x40 a pile gets is appended to
# acked.txt as it arrives. While that runs the gateway is killed with SIGKILL --kills times at
# random intervals of --kill-min…--kill-max s and restarted on the same data directory after
# --down s. Then the piles stop new bills and wait for their outstanding ones (--drain-timeout),
# the script waits until GET /v1/outbox shows nothing pending for "billing" (--settle-timeout),
# and compares: acked ⊆ received (set inclusion over trade serials). Prints the counts and exits
# 1 if any acked bill is missing (also 1 if a step failed, 2 on bad arguments).
#
# Everything started is stopped on exit (scripts/lib/harness.sh); the gateway and the simulator run
# under `timeout`, so nothing outlives a killed script for long. Loopback only. Waits (up to
# --wait-busy s) while another benchmark runs.
#
# --bills-in-flight N adds a closed-loop load on top (N bills outstanding per pile, a new one as
# each is acked), so kills land in the middle of busy group commits.
#
# Usage: scripts/chaos-outbox.sh [--piles 500] [--bills-per-minute 2000] [--bills-in-flight 1] [--kills 5]
#          [--kill-min 5] [--kill-max 15] [--down 1] [--bill-retry 5] [--drain-timeout 60]
#          [--settle-timeout 60] [--pile-port 19267] [--api-port 19280] [--seed N]
#          [--bin PATH] [--no-build] [--keep] [--out DIR] [--wait-busy 600]
set -euo pipefail
COMMAND="scripts/chaos-outbox.sh $*"
source "$(dirname "$0")/lib/harness.sh"
harness_init chaos

PILES=500 BPM=2000 INFLIGHT=1 KILLS=5 KILL_MIN=5 KILL_MAX=15 DOWN=1 BILL_RETRY=5 DRAIN_TIMEOUT=60
SETTLE_TIMEOUT=60 PILE_PORT=19267 API_PORT=19280 SEED="" BIN="" BUILD=1 KEEP=0 OUT="" WAIT_BUSY=600
while [ $# -gt 0 ]; do
    case "$1" in
        --piles) PILES=$2; shift 2 ;;
        --bills-per-minute) BPM=$2; shift 2 ;;
        --bills-in-flight) INFLIGHT=$2; shift 2 ;;
        --kills) KILLS=$2; shift 2 ;;
        --kill-min) KILL_MIN=$2; shift 2 ;;
        --kill-max) KILL_MAX=$2; shift 2 ;;
        --down) DOWN=$2; shift 2 ;;
        --bill-retry) BILL_RETRY=$2; shift 2 ;;
        --drain-timeout) DRAIN_TIMEOUT=$2; shift 2 ;;
        --settle-timeout) SETTLE_TIMEOUT=$2; shift 2 ;;
        --pile-port) PILE_PORT=$2; shift 2 ;;
        --api-port) API_PORT=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --bin) BIN=$2; BUILD=0; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        --wait-busy) WAIT_BUSY=$2; shift 2 ;;
        -h|--help) sed -n '2,28p' scripts/chaos-outbox.sh; exit 0 ;;
        *) usage_error "unknown argument $1" ;;
    esac
done
require_whole_number --piles "$PILES"; require_whole_number --bills-per-minute "$BPM"
require_whole_number --bills-in-flight "$INFLIGHT"; require_whole_number --kills "$KILLS"
require_whole_number --kill-min "$KILL_MIN"; require_whole_number --kill-max "$KILL_MAX"
require_whole_number --drain-timeout "$DRAIN_TIMEOUT"; require_whole_number --settle-timeout "$SETTLE_TIMEOUT"
require_whole_number --pile-port "$PILE_PORT"; require_whole_number --api-port "$API_PORT"
require_whole_number --wait-busy "$WAIT_BUSY"
if [ "$PILES" -lt 1 ] || [ "$KILL_MIN" -lt 1 ] || [ "$KILL_MAX" -lt "$KILL_MIN" ]; then
    usage_error "need --piles >= 1 and 1 <= --kill-min <= --kill-max"
fi
[ -n "$SEED" ] && RANDOM=$SEED

RUN=${OUT:-$(mktemp -d /tmp/pilegate-chaos.XXXXXX)}
mkdir -p "$RUN"
DATA="$RUN/data"
API="http://127.0.0.1:$API_PORT"
GW_WRAP="" SIM_WRAP="" SUB_LOOP=""

stop_subscriber() {
    if [ -n "$SUB_LOOP" ]; then
        stop_processes "$SUB_LOOP"
        SUB_LOOP=""
    fi
    if [ -s "$RUN/tail.pid" ]; then    # the loop's current `pilegate tail` (not this shell's child)
        local pid
        pid=$(cat "$RUN/tail.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        : >"$RUN/tail.pid"
    fi
}
keep_or_remove_run() {
    if [ "$KEEP" = 1 ] || [ "$HARNESS_RC" -ne 0 ]; then log "run files kept in $RUN"; else rm -rf "$RUN"; fi
}
on_exit stop_subscriber
on_exit keep_or_remove_run

require_free_ports "$PILE_PORT" "$API_PORT"
bench_lock "$WAIT_BUSY"
release_build

# The kill schedule, fixed up front so the simulator's run length is known.
INTERVALS=()
TOTAL=0
for ((i = 0; i < KILLS; i++)); do
    d=$((KILL_MIN + RANDOM % (KILL_MAX - KILL_MIN + 1)))
    INTERVALS+=("$d")
    TOTAL=$((TOTAL + d))
done
SIM_DURATION=$((TOTAL + 10 + KILLS * 2))
BOUND=$((SIM_DURATION + DRAIN_TIMEOUT + SETTLE_TIMEOUT + 120))
INCARNATION=0

start_gateway() {
    INCARNATION=$((INCARNATION + 1))
    PILEGATE_PILE_HOST=127.0.0.1 PILEGATE_PILE_PORT=$PILE_PORT PILEGATE_API_HOST=127.0.0.1 \
    PILEGATE_API_PORT=$API_PORT PILEGATE_DATA_DIRECTORY=$DATA PILEGATE_LOG_LEVEL=notice \
    PILEGATE_FLAP_MAX_CONNECTS=1000000 PILEGATE_FLAP_MAX_CONNECTS_PER_ADDRESS=100000000 PILEGATE_FLAP_BAN_DURATION=0 \
    PILEGATE_MAX_CONNECTIONS_PER_ADDRESS=1000000 PILEGATE_FRAME_RATE_PER_SECOND=100000 PILEGATE_FRAME_BURST=100000 \
    PILEGATE_BYTE_RATE_PER_SECOND=100000000 PILEGATE_BYTE_BURST=100000000 PILEGATE_DRAIN_WINDOW=0 \
        spawn_bounded "$BOUND" "$RUN/gateway-$INCARNATION.log" "$BIN" serve
    GW_WRAP=$SPAWNED
    wait_http "$API/v1/outbox" 30 "$GW_WRAP" "$RUN/gateway-$INCARNATION.log"
    log "gateway #$INCARNATION up (pid $(child_pid "$GW_WRAP")) after $((WAITED_MS / 1000)).$((WAITED_MS % 1000 / 100)) s"
}

# The backend: `pilegate tail --print` acks each event and prints it; it ends when its connection
# ends (gateway killed), so it runs in a loop. Its pid is kept for stopping it.
subscriber_loop() {
    trap 'exit 0' TERM
    while :; do
        "$BIN" tail --api "$API" --service billing --instance b1 --events transaction_record --durable \
            --max-in-flight 1024 --print >>"$RUN/received.jsonl" 2>>"$RUN/tail.err" &
        echo $! >"$RUN/tail.pid"
        wait $! || true
        echo "$(date +%T) tail exited" >>"$RUN/tail.err"
        sleep 0.3
    done
}

machine_info
log "run files in $RUN; kill schedule (s): ${INTERVALS[*]}; piles $PILES, $BPM bills/min, $INFLIGHT in flight per pile, retry ${BILL_RETRY}s"

start_gateway
: >"$RUN/received.jsonl"
: >"$RUN/acked.txt"
subscriber_loop &
SUB_LOOP=$!
track "$SUB_LOOP"

spawn_bounded $((SIM_DURATION + DRAIN_TIMEOUT + 60)) "$RUN/simulate.log" "$BIN" simulate \
    --gateway "127.0.0.1:$PILE_PORT" --piles "$PILES" --guns 2 --rate 2000 --threads 1 \
    --duration "$SIM_DURATION" --heartbeat 10 --bills-per-minute "$BPM" --bills-in-flight "$INFLIGHT" \
    --bill-retry "$BILL_RETRY" --bill-max-sends 100000 --login-timeout 5 --login-retry 2 \
    --reconnect-min 0.5 --reconnect-max 3 --drain-timeout "$DRAIN_TIMEOUT" --report-interval 5 \
    --acked-bills-out "$RUN/acked.txt" --summary-json "$RUN/sim-summary.json"
SIM_WRAP=$SPAWNED

for d in "${INTERVALS[@]}"; do
    sleep "$d"
    pid=$(child_pid "$GW_WRAP")
    [ -n "$pid" ] || die "gateway is not running before a kill"
    acked_now=$(wc -l <"$RUN/acked.txt")
    kill -KILL "$pid"
    wait "$GW_WRAP" 2>/dev/null || true
    forget "$GW_WRAP"
    log "kill -9 gateway #$INCARNATION (pid $pid) after $d s; piles have $acked_now 0x40s so far"
    sleep "$DOWN"
    start_gateway
done

log "kills done; piles upload for $((SIM_DURATION - TOTAL - KILLS * DOWN)) s more, then drain (≤ ${DRAIN_TIMEOUT} s)"
wait "$SIM_WRAP" || log "simulate exited with status $? (see $RUN/simulate.log)"
forget "$SIM_WRAP"
SIM_WRAP=""
tail -n 22 "$RUN/simulate.log" | sed -n '/^summary/,$p'

# Wait for the outbox to hand everything to "billing" and get its acks.
pending="?"
settle_end=$((SECONDS + SETTLE_TIMEOUT))
while [ $SECONDS -lt $settle_end ]; do
    pending=$(curl -fsS "$API/v1/outbox" 2>/dev/null | jq -r '[.pending.billing // {} | .[]] | add // 0' 2>/dev/null || echo "?")
    [ "$pending" = 0 ] && break
    sleep 0.5
done
log "outbox pending for billing: $pending"
curl -fsS "$API/v1/outbox" >"$RUN/outbox-final.json" 2>/dev/null || true
sleep 1
stop_subscriber

python3 - "$RUN" "$pending" <<'EOF' | tee "$RUN/result.txt"
import json, sqlite3, sys
run, pending = sys.argv[1], sys.argv[2]
acked = [l.strip() for l in open(f"{run}/acked.txt") if l.strip()]
received, events, bad = [], 0, 0
for line in open(f"{run}/received.jsonl"):
    line = line.strip()
    if not line:
        continue
    try:
        m = json.loads(line)
    except ValueError:
        bad += 1
        continue
    if m.get("type") != "event" or m.get("event") != "transaction_record":
        continue
    events += 1
    serial = (m.get("data") or {}).get("tradeSerial")
    if serial:
        received.append(serial)
acked_set, received_set = set(acked), set(received)
missing = sorted(acked_set - received_set)
sim = {}
try:
    sim = json.load(open(f"{run}/sim-summary.json"))
except (OSError, ValueError):
    pass
print(f"bills acked to piles (0x40, distinct):   {len(acked_set)}  ({len(acked) - len(acked_set)} repeated lines)")
print(f"distinct bills received by the backend:  {len(received_set)}")
print(f"events received (incl. redeliveries):    {events}")
print(f"duplicates received (at-least-once):     {events - len(received_set)}")
print(f"received but never acked to a pile:      {len(received_set - acked_set)}")
print(f"bills still unacked at the piles:        {sim.get('billsPending', '?')}  (abandoned: {sim.get('billsAbandoned', '?')})")
print(f"outbox pending for billing at the end:   {pending}")
if bad:
    print(f"unparsable subscriber lines:             {bad}")
print(f"MISSING (acked to a pile, never received): {len(missing)}")
if missing:
    # Evidence: is a missing bill in the outbox at all (stored, delivery not finished) or lost?
    stored, delivered = set(), set()
    try:
        db = sqlite3.connect(f"file:{run}/data/outbox.sqlite?mode=ro", uri=True)
        for serial, seq, done in db.execute(
                "SELECT e.tradeSerial, e.seq, EXISTS (SELECT 1 FROM outbox_progress p "
                "WHERE p.service = 'billing' AND p.seq = e.seq) FROM outbox_events e WHERE e.tradeSerial IS NOT NULL"):
            if serial in acked_set:
                stored.add(serial)
                if done:
                    delivered.add(serial)
        db.close()
    except sqlite3.Error as e:
        print(f"  (cannot read the outbox: {e})")
    m = set(missing)
    print(f"  of these, in the outbox and not yet delivered (delivery still behind): {len(m & stored - delivered)}")
    print(f"  of these, marked delivered to billing but not recorded by the subscriber: {len(m & delivered)}")
    print(f"  of these, NOT in the outbox at all (LOST after 0x40): {len(m - stored)}")
    for s in missing[:10]:
        print(f"  missing {s}{' (not in outbox)' if s not in stored else ''}")
sys.exit(1 if missing or not acked_set else 0)
EOF
rc=${PIPESTATUS[0]}
{
    echo "COMMAND=$COMMAND"
    echo "DATE=$DATE"
    echo "GIT=$GIT"
    echo "CPU=$CPU_MODEL, $CORES cores"
    echo "KILL_SCHEDULE=${INTERVALS[*]}"
    echo "GATEWAY_STARTS=$INCARNATION"
} >>"$RUN/result.txt"
if [ "$rc" -eq 0 ]; then
    log "PASS: every bill acked to a pile reached the backend ($KILLS kill -9s, $INCARNATION gateway starts)"
else
    log "FAIL: see $RUN (acked.txt, received.jsonl, gateway-*.log, simulate.log)"
    KEEP=1
fi
exit "$rc"
