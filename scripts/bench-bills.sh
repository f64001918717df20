#!/usr/bin/env bash
# Bill benchmark (issue 5): bills/s with durable ack and the 0x40 latency, on loopback.
#
# One `pilegate serve` (fresh data directory on this machine's disk, outbox synchronous=FULL),
# one backend subscriber (`pilegate tail`, service "billing", acks every transaction_record),
# and `pilegate simulate` piles uploading bills (0x3B). A 0x40 is sent only after the commit
# that holds the bill, so every acked bill is a durable one. Two phases, each on a fresh gateway:
#
#   saturation  closed loop: --inflight bills outstanding per pile (a new one as each 0x40
#               arrives), --piles piles: the most bills/s the gateway acks durably here
#   rate        open loop at --rate bills/s spread over the piles: the 0x40 latency at that load
#
# Per phase: bills/s acked (Δ outbox eventsStored over the measurement window, cross-checked with
# the simulator's count), 0x40 latency p50/p99/max from the simulator (first send of a bill to its
# 0x40; bucketed, 0.1 ms steps below 1 ms), outbox commits/s, bills per commit, commit latency
# p50/p99 (from the GET /v1/outbox buckets), delivery to the subscriber (events/s, pending at the
# end), and gateway CPU per bill. It also measures this disk's fsync cost (4 KiB write + fsync,
# in the data directory) before the phases. Targets: >= 5,000 bills/s, p99 <= 10 ms.
#
# --cluster (issue 11): the gateway runs in cluster mode against its own nats-server (JetStream,
# file store in the run directory, started fresh per phase on --nats-port): a 0x40 is sent only
# after the bill's PubAck from the stream <cluster>_EVENTS, and the subscriber gets bills from the
# service's durable consumer. bills/s is then the stream's stored count (outbox "relayed"), and the
# report adds the nats-server's CPU per bill. docs/CLUSTER.md, "Nothing acknowledged is lost".
#
# Everything started is stopped on exit (scripts/lib/harness.sh); gateway and simulator run under
# `timeout`. Waits (up to --wait-busy s) while another benchmark runs.
#
# Usage: scripts/bench-bills.sh [--phases saturation,rate] [--piles 500] [--inflight 4]
#          [--rate 5000] [--duration 40] [--warmup 10] [--bill-retry 5]
#          [--pile-port 19367] [--api-port 19380] [--bin PATH] [--no-build] [--keep]
#          [--wait-busy 600] [--cluster] [--nats-port 19422]
set -euo pipefail
COMMAND="scripts/bench-bills.sh $*"
source "$(dirname "$0")/lib/harness.sh"
harness_init bench-bills

PHASES=saturation,rate PILES=500 INFLIGHT=4 RATE=5000 DURATION=40 WARMUP=10 BILL_RETRY=5
PILE_PORT=19367 API_PORT=19380 BIN="" BUILD=1 KEEP=0 WAIT_BUSY=600 CLUSTER=0 NATS_PORT=19422
while [ $# -gt 0 ]; do
    case "$1" in
        --phases) PHASES=$2; shift 2 ;;
        --piles) PILES=$2; shift 2 ;;
        --inflight) INFLIGHT=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --bill-retry) BILL_RETRY=$2; shift 2 ;;
        --pile-port) PILE_PORT=$2; shift 2 ;;
        --api-port) API_PORT=$2; shift 2 ;;
        --bin) BIN=$2; BUILD=0; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        --wait-busy) WAIT_BUSY=$2; shift 2 ;;
        --cluster) CLUSTER=1; shift ;;
        --nats-port) NATS_PORT=$2; shift 2 ;;
        -h|--help) sed -n '2,33p' scripts/bench-bills.sh; exit 0 ;;
        *) usage_error "unknown argument $1" ;;
    esac
done
require_whole_number --piles "$PILES"; require_whole_number --inflight "$INFLIGHT"; require_whole_number --rate "$RATE"
require_whole_number --duration "$DURATION"; require_whole_number --warmup "$WARMUP"
require_whole_number --pile-port "$PILE_PORT"; require_whole_number --api-port "$API_PORT"
require_whole_number --wait-busy "$WAIT_BUSY"; require_whole_number --nats-port "$NATS_PORT"
[ "$DURATION" -gt "$WARMUP" ] || usage_error "--duration must exceed --warmup"

RUN=$(mktemp -d /tmp/pilegate-bench-bills.XXXXXX)
API="http://127.0.0.1:$API_PORT"
GW_WRAP="" SIM_WRAP="" TAIL_PID="" NATS_WRAP=""

# Stops this phase's gateway, simulator, subscriber and nats-server.
stop_all() {
    stop_processes $TAIL_PID $SIM_WRAP $GW_WRAP
    stop_processes $NATS_WRAP
    TAIL_PID="" SIM_WRAP="" GW_WRAP="" NATS_WRAP=""
}
keep_or_remove_run() {
    if [ "$KEEP" = 1 ] || [ "$HARNESS_RC" -ne 0 ]; then log "run files kept in $RUN"; else rm -rf "$RUN"; fi
}
on_exit keep_or_remove_run

bench_lock "$WAIT_BUSY"
require_free_ports "$PILE_PORT" "$API_PORT"
if [ "$CLUSTER" = 1 ]; then
    require_free_ports "$NATS_PORT"
    NATS_SERVER=$(command -v nats-server || ls /usr/sbin/nats-server 2>/dev/null || true)
    [ -n "$NATS_SERVER" ] || die "nats-server missing (scripts/setup.sh installs it)"
fi
release_build
machine_info
FS=$(df -T "$RUN" | awk 'NR==2 {print $2 " on " $1}')

log "fsync cost of $FS (4 KiB write + fsync, 500 times, in the run directory)"
FSYNC=$(python3 - "$RUN" <<'EOF'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
block, samples = b"x" * 4096, []
for i in range(500):
    os.pwrite(fd, block, (i % 64) * 4096)
    t = time.perf_counter()
    os.fsync(fd)
    samples.append((time.perf_counter() - t) * 1e6)
os.close(fd)
os.unlink(path)
samples.sort()
pct = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
print(f"fsync p50 {pct(0.5):.0f} us, p99 {pct(0.99):.0f} us, mean {sum(samples) / len(samples):.0f} us")
EOF
)
log "$FSYNC"

# A fresh nats-server with JetStream for one phase (cluster mode), its store in the phase's directory.
start_nats() {
    local dir=$1
    spawn_bounded $((DURATION + 180)) "$dir/nats.log" "$NATS_SERVER" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$dir/nats-store"
    NATS_WRAP=$SPAWNED
    local i
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nats-server did not listen on $NATS_PORT"
}

start_gateway() {
    local data=$1
    if [ "$CLUSTER" = 1 ]; then export PILEGATE_NATS_URL="nats://127.0.0.1:$NATS_PORT" PILEGATE_NODE_ID=bench-1; fi
    PILEGATE_PILE_HOST=127.0.0.1 PILEGATE_PILE_PORT=$PILE_PORT PILEGATE_API_HOST=127.0.0.1 \
    PILEGATE_API_PORT=$API_PORT PILEGATE_DATA_DIRECTORY=$data PILEGATE_LOG_LEVEL=warning \
    PILEGATE_FLAP_MAX_CONNECTS=1000000 PILEGATE_FLAP_MAX_CONNECTS_PER_ADDRESS=100000000 \
    PILEGATE_MAX_CONNECTIONS_PER_ADDRESS=1000000 PILEGATE_FRAME_RATE_PER_SECOND=100000 PILEGATE_FRAME_BURST=100000 \
    PILEGATE_BYTE_RATE_PER_SECOND=100000000 PILEGATE_BYTE_BURST=100000000 PILEGATE_DRAIN_WINDOW=0 \
        spawn_bounded $((DURATION + 120)) "$data.log" "$BIN" serve
    GW_WRAP=$SPAWNED
    wait_http "$API/v1/outbox" 30 "$GW_WRAP" "$data.log"
    if [ "$CLUSTER" = 1 ]; then
        local i
        for ((i = 0; i < 300; i++)); do
            curl -fsS "$API/v1/outbox" | grep -q '"available":true' && return 0
            sleep 0.1
        done
        die "the event stream did not become available in 30 s"
    fi
}

RESULTS=()
run_phase() {
    local phase=$1 dir="$RUN/$1" sim_args
    mkdir -p "$dir"
    case "$phase" in
        saturation) sim_args=(--bills-in-flight "$INFLIGHT") ;;
        rate) sim_args=(--bills-per-minute $((RATE * 60))) ;;
        *) echo "bench-bills: unknown phase $phase" >&2; exit 2 ;;
    esac
    log "phase $phase: $PILES piles, ${sim_args[*]}, ${DURATION} s (measured after ${WARMUP} s)"
    [ "$CLUSTER" = 1 ] && start_nats "$dir"
    start_gateway "$dir/data"
    "$BIN" tail --api "$API" --service billing --instance b1 --events transaction_record --durable --max-in-flight 1024 \
        --duration $((DURATION + 5)) --warmup "$WARMUP" --stats-interval 10 >"$dir/tail.log" 2>&1 &
    TAIL_PID=$!
    track "$TAIL_PID"
    sleep 1
    spawn_bounded $((DURATION + 60)) "$dir/simulate.log" "$BIN" simulate --gateway "127.0.0.1:$PILE_PORT" \
        --piles "$PILES" --guns 2 --rate 2000 --threads 1 --duration "$DURATION" --heartbeat 10 \
        --bill-retry "$BILL_RETRY" --bill-max-sends 100000 --drain-timeout 10 --report-interval 10 "${sim_args[@]}" \
        --summary-json "$dir/sim.json"
    SIM_WRAP=$SPAWNED
    sleep "$WARMUP"
    local gw
    gw=$(child_pid "$GW_WRAP")
    local nats=0
    [ "$CLUSTER" = 1 ] && nats=$(child_pid "$NATS_WRAP")
    curl -fsS "$API/v1/outbox" >"$dir/outbox-0.json"
    echo "$(date +%s.%N) $(cpu_seconds "$gw") $(rss_bytes "$gw") $([ "$nats" = 0 ] && echo 0 || cpu_seconds "$nats")" >"$dir/t0"
    sleep $((DURATION - WARMUP))
    curl -fsS "$API/v1/outbox" >"$dir/outbox-1.json"
    echo "$(date +%s.%N) $(cpu_seconds "$gw") $(rss_bytes "$gw") $([ "$nats" = 0 ] && echo 0 || cpu_seconds "$nats")" >"$dir/t1"
    wait "$SIM_WRAP" || log "simulate exited with status $?"
    forget "$SIM_WRAP"
    SIM_WRAP=""
    sleep 3
    curl -fsS "$API/v1/outbox" >"$dir/outbox-2.json" || true
    wait "$TAIL_PID" 2>/dev/null || true
    forget "$TAIL_PID"
    TAIL_PID=""
    stop_all
    sed -n '/^summary/,$p' "$dir/simulate.log" | sed -n '1,14p'
    RESULTS+=("$(python3 - "$dir" "$phase" <<'EOF'
import json, sys
d, phase = sys.argv[1], sys.argv[2]
o0, o1 = (json.load(open(f"{d}/outbox-{i}.json")) for i in (0, 1))
try:
    o2 = json.load(open(f"{d}/outbox-2.json"))
except (OSError, ValueError):
    o2 = o1
t0, c0, rss0, n0 = map(float, open(f"{d}/t0").read().split())
t1, c1, rss1, n1 = map(float, open(f"{d}/t1").read().split())
sim = json.load(open(f"{d}/sim.json"))
tail = {}
for line in open(f"{d}/tail.log"):
    if line.startswith("{"):
        try: tail = json.loads(line)
        except ValueError: pass
k0, k1 = o0["counters"], o1["counters"]
dt = t1 - t0
# Cluster mode: bills stored in the stream (relayed) count too; SQLite holds only fallbacks.
stored = k1["eventsStored"] + k1.get("relayed", 0) - k0["eventsStored"] - k0.get("relayed", 0)
commits = k1["commits"] - k0["commits"]
buckets = [b - a for a, b in zip(k0["commitLatencyBuckets"], k1["commitLatencyBuckets"])]
bounds = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]
def pct(q):
    n = sum(buckets)
    if n == 0: return "-"
    seen = 0
    for i, c in enumerate(buckets):
        seen += c
        if seen >= q * n:
            return f"<={bounds[i] * 1000:g} ms" if i < len(bounds) else ">1000 ms"
mean_commit = (k1["commitLatencySumSeconds"] - k0["commitLatencySumSeconds"]) / commits * 1000 if commits else 0
pending = sum((o2.get("pending", {}).get("billing") or {}).values())
consumer = ((o2.get("stream") or {}).get("consumers") or {}).get("billing")
if consumer:
    pending = consumer.get("pending", 0) + consumer.get("ackPending", 0)
r = {
    "phase": phase,
    "billsPerSecond": stored / dt,
    "simBillsAcked": sim["billsAcked"], "simElapsed": sim["elapsedSeconds"],
    "p50": sim["ackLatencyP50Ms"], "p99": sim["ackLatencyP99Ms"], "max": sim["ackLatencyMaxMs"],
    "mean": sim["ackLatencyMeanMs"],
    "commitsPerSecond": commits / dt, "billsPerCommit": stored / commits if commits else 0,
    "commitP50": pct(0.5), "commitP99": pct(0.99), "commitMeanMs": mean_commit,
    "cpuPerBillUs": (c1 - c0) / stored * 1e6 if stored else 0, "gatewayCores": (c1 - c0) / dt,
    "deliveredPerSecond": tail.get("eventsPerSecond"), "pendingAfter": pending,
    "duplicates": k1["duplicates"], "commitFailures": k1["commitFailures"],
    "abandoned": sim["billsAbandoned"], "unacked": sim["billsPending"],
    "rssMiB": rss1 / 1048576,
    "natsCpuPerBillUs": (n1 - n0) / stored * 1e6 if stored and n1 else None,
    "relayFallbacks": k1.get("relayFallbacks", 0),
}
print(json.dumps(r))
EOF
)")
    log "phase $phase: ${RESULTS[-1]}"
}

IFS=',' read -ra PHASE_LIST <<<"$PHASES"
for p in "${PHASE_LIST[@]}"; do run_phase "$p"; done

python3 - "$FSYNC" "$CPU_MODEL" "$CORES" "$DATE" "$GIT" "$COMMAND" "$FS" "$OTHERS" "${RESULTS[@]}" <<'EOF'
import json, sys
fsync, cpu, cores, date, git, command, fs, others = sys.argv[1:9]
rows = [json.loads(a) for a in sys.argv[9:]]
print()
print(f"bench-bills  {date}  {cpu}, {cores} cores  git {git}")
print(f"command      {command}")
print(f"disk         {fs}: {fsync}")
if others:
    print(f"note         other pilegate runs at the start: {others}")
print()
fmt = "{:<11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>11} {:>11} {:>9} {:>10} {:>8} {:>8}"
print(fmt.format("phase", "bills/s", "0x40 p50", "0x40 p99", "0x40 max", "commits/s", "bills/cmt", "cmt mean", "cmt p50", "cmt p99", "CPU/bill", "deliver/s", "pending", "RSS"))
for r in rows:
    f = lambda v, s="{:.2f}": "-" if v is None else s.format(v)
    print(fmt.format(r["phase"], f(r["billsPerSecond"], "{:.0f}"), f(r["p50"]) + "ms", f(r["p99"]) + "ms", f(r["max"], "{:.0f}") + "ms",
                     f(r["commitsPerSecond"], "{:.0f}"), f(r["billsPerCommit"], "{:.1f}"), f(r["commitMeanMs"]) + "ms",
                     r["commitP50"], r["commitP99"], f(r["cpuPerBillUs"], "{:.0f}") + "us", f(r["deliveredPerSecond"], "{:.0f}"),
                     r["pendingAfter"], f(r.get("rssMiB"), "{:.0f}") + "MiB"))
print()
print("0x40 latency = first send of a bill to its 0x40 at the simulated pile (bucket upper bounds); bills/s = outbox")
print("eventsStored over the measured window; CPU/bill = gateway CPU time per stored bill; deliver/s = subscriber")
print("events/s (after warm-up); pending = billing events not yet acked by the subscriber 3 s after the piles stopped;")
print("RSS = gateway resident memory at the end of the measured window (/proc).")
for r in rows:
    if r.get("natsCpuPerBillUs") is not None:
        print(f"{r['phase']}: cluster mode, bills through the JetStream stream; nats-server CPU/bill "
              f"{r['natsCpuPerBillUs']:.0f}us, stream publishes that fell back to SQLite {r['relayFallbacks']}")
for r in rows:
    issues = [k for k in ("duplicates", "commitFailures", "abandoned", "unacked") if r[k]]
    if issues:
        print(f"{r['phase']}: " + ", ".join(f"{k}={r[k]}" for k in issues))
EOF
