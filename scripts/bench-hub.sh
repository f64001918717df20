#!/usr/bin/env bash
# Backend hub benchmark (issue 4): simulated piles -> one `pilegate serve` -> `pilegate tail`
# subscribers over the /v1/events WebSocket, all on loopback on this machine.
#
# Phases (each with a fresh gateway, simulators and subscribers):
#   latency     ~20,000 heartbeat events/s (default 10,000 piles x 2 guns, 1 s heartbeat) delivered
#               to service "bench" (instances b1, b2 share the piles by rendezvous hashing);
#               pile->backend latency p50/p99 = tail arrival time - event receivedAt
#   nohub       the same pile load with no subscriber (the hub builds no events): the gateway's
#               CPU without the hub, so the hub's own share per event can be computed
#   saturation  a higher offered load (default 8,000 piles x 20 guns, 1 s heartbeat = 160,000/s)
#               to find the events/s actually delivered (heartbeats below ~0.5 s make the simulated
#               piles drop their links under load, so the load is raised by guns, not interval)
# For each: events/s delivered (sum over subscribers), gateway CPU per delivered event (Δ
# /v1/stats process.cpuSeconds, cross-checked with /proc/<pid>/stat), events/s per gateway core
# (= events / gateway CPU seconds), and the CPU of the simulators and subscribers that share the
# cores. The measurement window starts --warmup seconds after the subscribers connect, once
# every pile is logged in.
#
# --cluster (issue 11): the same phases across two cluster nodes and a nats-server of their own
# (fresh per phase): the piles on node A (--pile-port/--api-port), the subscribers on node B (the
# next two ports), so every event crosses the relay (docs/CLUSTER.md, "Backends see one gateway").
# Gateway CPU is then both nodes' (/proc); the report adds the nats-server's. --nats-nice N starts
# the nats-server at that nice value (negative: ahead of the other processes on a full machine);
# --nats-procs N caps its Go scheduler at N threads (GOMAXPROCS; unset: the number of cores).
#
# Everything started is stopped on exit (scripts/lib/harness.sh); the gateway runs under `timeout`,
# each wait is bounded. Waits (up to --wait-busy s) while another benchmark is running.
#
# Usage: scripts/bench-hub.sh [--phases latency,nohub,saturation] [--measure 30] [--warmup 5]
#          [--lat-piles 10000] [--lat-guns 2] [--lat-heartbeat 1]
#          [--sat-piles 8000] [--sat-guns 20] [--sat-heartbeat 1]
#          [--subscribers 2] [--sims 2] [--sim-threads 1] [--sources 16] [--rate 2500]
#          [--max-in-flight 1024] [--pile-port 18867] [--api-port 18880]
#          [--bin PATH] [--no-build] [--out DIR] [--wait-busy 600] [--cluster] [--nats-port 18890]
#          [--nats-nice 0] [--nats-procs N]
set -euo pipefail
COMMAND="scripts/bench-hub.sh $*"
source "$(dirname "$0")/lib/harness.sh"
harness_init bench-hub
HARNESS_LOG_FD=2

PHASES=latency,nohub,saturation MEASURE=30 WARMUP=5
LAT_PILES=10000 LAT_GUNS=2 LAT_HB=1
SAT_PILES=8000 SAT_GUNS=20 SAT_HB=1
SUBS=2 SIMS=2 SIM_THREADS=1 SOURCES=16 RATE=2500 MAX_IN_FLIGHT=1024
PILE_PORT=18867 API_PORT=18880 BIN="" BUILD=1 OUT="" WAIT_BUSY=600 CLUSTER=0 NATS_PORT=18890 NATS_NICE=0 NATS_PROCS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --phases) PHASES=$2; shift 2 ;;
        --measure) MEASURE=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --lat-piles) LAT_PILES=$2; shift 2 ;;
        --lat-guns) LAT_GUNS=$2; shift 2 ;;
        --lat-heartbeat) LAT_HB=$2; shift 2 ;;
        --sat-piles) SAT_PILES=$2; shift 2 ;;
        --sat-guns) SAT_GUNS=$2; shift 2 ;;
        --sat-heartbeat) SAT_HB=$2; shift 2 ;;
        --subscribers) SUBS=$2; shift 2 ;;
        --sims) SIMS=$2; shift 2 ;;
        --sim-threads) SIM_THREADS=$2; shift 2 ;;
        --sources) SOURCES=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --max-in-flight) MAX_IN_FLIGHT=$2; shift 2 ;;
        --pile-port) PILE_PORT=$2; shift 2 ;;
        --api-port) API_PORT=$2; shift 2 ;;
        --bin) BIN=$2; BUILD=0; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --out) OUT=$2; shift 2 ;;
        --wait-busy) WAIT_BUSY=$2; shift 2 ;;
        --cluster) CLUSTER=1; shift ;;
        --nats-port) NATS_PORT=$2; shift 2 ;;
        --nats-nice) NATS_NICE=$2; shift 2 ;;
        --nats-procs) NATS_PROCS=$2; shift 2 ;;
        -h|--help) sed -n '2,36p' scripts/bench-hub.sh; exit 0 ;;
        *) usage_error "unknown argument $1" ;;
    esac
done
require_whole_number --measure "$MEASURE"; require_whole_number --warmup "$WARMUP"
require_whole_number --lat-piles "$LAT_PILES"; require_whole_number --sat-piles "$SAT_PILES"
require_whole_number --subscribers "$SUBS"; require_whole_number --sims "$SIMS"
require_whole_number --wait-busy "$WAIT_BUSY"
if [ "$SUBS" -lt 1 ] || [ "$SUBS" -gt 2 ]; then usage_error "--subscribers must be 1 or 2"; fi
for n in "$LAT_PILES" "$SAT_PILES"; do
    if [ "$n" -gt 19000 ]; then usage_error "at most 19,000 piles (20,000 open files per process)"; fi
done

RUN=${OUT:-$(mktemp -d /tmp/pilegate-benchhub.XXXXXX)}
mkdir -p "$RUN"
DATA=""
GW_PID="" GW_B_PID="" NATS_PID="" SIM_PIDS=() TAIL_PIDS=()
API="http://127.0.0.1:$API_PORT"
# Where the subscribers connect: node B in cluster mode, else the one gateway.
SUB_API=$API
[ "$CLUSTER" = 0 ] || SUB_API="http://127.0.0.1:$((API_PORT + 1))"

# Stops this phase's processes and removes its data directory.
stop_all() {
    stop_processes "${TAIL_PIDS[@]}" "${SIM_PIDS[@]}" $GW_PID $GW_B_PID $NATS_PID
    GW_PID="" GW_B_PID="" NATS_PID="" SIM_PIDS=() TAIL_PIDS=()
    if [ -n "$DATA" ]; then rm -rf "$DATA"; DATA=""; fi
}
on_exit stop_all

require_free_ports "$PILE_PORT" "$API_PORT"
if [ "$CLUSTER" = 1 ]; then
    require_free_ports "$((PILE_PORT + 1))" "$((API_PORT + 1))" "$NATS_PORT" "$((NATS_PORT + 1))"
    NATS_SERVER=$(command -v nats-server || ls /usr/sbin/nats-server 2>/dev/null || true)
    [ -n "$NATS_SERVER" ] || die "nats-server missing (scripts/setup.sh installs it)"
fi
bench_lock "$WAIT_BUSY"
OTHERS_AT_START=$OTHERS
release_build

stats_field() {  # stats_field 'python expression on d' (d = /v1/stats JSON); -1 when unanswered
    local doc i
    for i in 1 2 3; do
        if doc=$(curl -fsS --max-time 10 "$API/v1/stats" 2>/dev/null); then
            python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" <<<"$doc" && return 0
        fi
    done
    log "GET /v1/stats did not answer in 3 x 10 s"
    echo -1
}

nats_messages() {  # "in out": the nats-server's message counters (its monitoring port); "0 0" unanswered
    curl -fsS --max-time 5 "http://127.0.0.1:$((NATS_PORT + 1))/varz" 2>/dev/null \
        | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['in_msgs'], d['out_msgs'])" 2>/dev/null || echo "0 0"
}

# run_phase NAME PILES GUNS HEARTBEAT SUBSCRIBERS
run_phase() {
    local name=$1 piles=$2 guns=$3 hb=$4 subs=$5
    local dir="$RUN/$name" per=$(( (piles + SIMS - 1) / SIMS )) i
    mkdir -p "$dir"
    DATA=$(mktemp -d /tmp/pilegate-benchhub-data.XXXXXX)
    local bound=$((MEASURE + WARMUP + 240))
    log "$name: gateway on $PILE_PORT/$API_PORT; $piles piles x $guns guns @ ${hb}s; $subs subscriber(s); logs in $dir"
    local nats_url=""
    if [ "$CLUSTER" = 1 ]; then
        spawn_bounded "$bound" "$dir/nats.log" env ${NATS_PROCS:+GOMAXPROCS=$NATS_PROCS} nice -n "$NATS_NICE" "$NATS_SERVER" -js -a 127.0.0.1 -p "$NATS_PORT" -m "$((NATS_PORT + 1))" -sd "$DATA/nats"
        NATS_PID=$SPAWNED
        for ((i = 0; i < 100; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done
        nats_url="nats://127.0.0.1:$NATS_PORT"
    fi
    # start_node NODE PILE_PORT API_PORT LOG: one gateway (a cluster node when nats_url is set).
    start_node() {
        mkdir -p "$DATA/$1"
        PILEGATE_NATS_URL=$nats_url PILEGATE_NODE_ID=$1 PILEGATE_CLUSTER_NAME=benchhub \
        PILEGATE_PILE_HOST=127.0.0.1 PILEGATE_PILE_PORT=$2 PILEGATE_API_PORT=$3 \
        PILEGATE_DATA_DIRECTORY=$DATA/$1 PILEGATE_LOG_LEVEL=warning \
        PILEGATE_FRAME_RATE_PER_SECOND=1000000 PILEGATE_BYTE_RATE_PER_SECOND=100000000 \
        PILEGATE_FLAP_MAX_CONNECTS=1000000 PILEGATE_FLAP_MAX_CONNECTS_PER_ADDRESS=1000000 \
        PILEGATE_MAX_CONNECTIONS_PER_ADDRESS=1000000 PILEGATE_DRAIN_WINDOW=0 \
            spawn_bounded "$bound" "$4" "$BIN" serve
    }
    start_node hub-a "$PILE_PORT" "$API_PORT" "$dir/gateway.log"
    GW_PID=$SPAWNED
    wait_http "$API/v1/stats" 30 "$GW_PID" "$dir/gateway.log"
    local gw; gw=$(child_pid "$GW_PID")
    local gws=$gw
    if [ "$CLUSTER" = 1 ]; then
        start_node hub-b "$((PILE_PORT + 1))" "$((API_PORT + 1))" "$dir/gateway-b.log"
        GW_B_PID=$SPAWNED
        wait_http "$SUB_API/v1/stats" 30 "$GW_B_PID" "$dir/gateway-b.log"
        gws="$gw $(child_pid "$GW_B_PID")"
    fi

    for ((i = 0; i < SIMS; i++)); do
        local n=$per
        if [ $(( (i + 1) * per )) -gt "$piles" ]; then n=$(( piles - i * per )); fi
        [ "$n" -gt 0 ] || continue
        spawn "$dir/sim$i.log" "$BIN" simulate --gateway "127.0.0.1:$PILE_PORT" --piles "$n" --guns "$guns" --heartbeat "$hb" \
            --first-id $((32010600000001 + i * per)) --source-addresses "$SOURCES" --rate "$(awk -v r="$RATE" -v s="$SIMS" 'BEGIN{print r/s}')" \
            --threads "$SIM_THREADS" --duration $((bound - 20)) --report-interval 10
        SIM_PIDS+=("$SPAWNED")
    done
    deadline=$((SECONDS + 120))
    while :; do
        local online; online=$(stats_field "d['counters']['online']" 2>/dev/null || echo 0)
        [ "$online" -ge "$piles" ] && break
        [ $SECONDS -lt $deadline ] || { log "$name: only $online of $piles piles online after 120 s"; return 1; }
        sleep 1
    done
    if [ "$CLUSTER" = 1 ]; then
        deadline=$((SECONDS + 30))
        until curl -fsS --max-time 5 "$API/v1/stats" 2>/dev/null | grep -q '"hub-b"'; do
            [ $SECONDS -lt $deadline ] || { log "$name: node A does not see node B after 30 s"; return 1; }
            sleep 0.5
        done
    fi
    log "$name: all $piles piles online; settling 3 s"
    sleep 3

    local names=(b1 b2)
    for ((i = 0; i < subs; i++)); do
        "$BIN" tail --api "$SUB_API" --service bench --instance "${names[$i]}" --events heartbeat \
            --max-in-flight "$MAX_IN_FLIGHT" --duration $((WARMUP + MEASURE + 3)) --warmup "$WARMUP" --stats-interval 5 \
            >"$dir/tail-${names[$i]}.out" 2>"$dir/tail-${names[$i]}.err" &
        TAIL_PIDS+=($!)
        track $!
    done
    sleep "$WARMUP"
    local t0 gw0 gwp0 rss0 sim0 tail0 hb0 fin0 nats0=0 nats1=0 natsmsg0="0 0" natsmsg1="0 0"
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    gw0=$(stats_field "d['process']['cpuSeconds']"); gwp0=$(cpu_seconds $gws); rss0=$(rss_bytes "$gw")
    [ -z "$NATS_PID" ] || nats0=$(cpu_seconds "$(child_pid "$NATS_PID")")
    [ -z "$NATS_PID" ] || natsmsg0=$(nats_messages)
    sim0=$(cpu_seconds "${SIM_PIDS[@]}"); tail0=$(cpu_seconds "${TAIL_PIDS[@]}")
    hb0=$(stats_field "d['counters']['heartbeats']"); fin0=$(stats_field "sum(d['counters']['framesIn'].values())")
    sleep "$MEASURE"
    local t1 gw1 gwp1 rss1 sim1 tail1 hb1 fin1
    t1=$(date +%s.%N)
    # shellcheck disable=SC2086
    gw1=$(stats_field "d['process']['cpuSeconds']"); gwp1=$(cpu_seconds $gws); rss1=$(rss_bytes "$gw")
    [ -z "$NATS_PID" ] || nats1=$(cpu_seconds "$(child_pid "$NATS_PID")")
    [ -z "$NATS_PID" ] || natsmsg1=$(nats_messages)
    sim1=$(cpu_seconds "${SIM_PIDS[@]}"); tail1=$(cpu_seconds "${TAIL_PIDS[@]}")
    hb1=$(stats_field "d['counters']['heartbeats']"); fin1=$(stats_field "sum(d['counters']['framesIn'].values())")
    curl -fsS --max-time 5 "$API/v1/hub" >"$dir/hub.json" || echo '{}' >"$dir/hub.json"
    [ "$CLUSTER" = 0 ] || curl -fsS --max-time 5 "$SUB_API/v1/stats" >"$dir/stats-b.json" || true
    curl -fsS --max-time 5 "$API/v1/stats" >"$dir/stats.json" || echo '{}' >"$dir/stats.json"
    for pid in "${TAIL_PIDS[@]}"; do
        local w=$((SECONDS + 20))
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $w ]; do sleep 0.2; done
    done
    cat >"$dir/window.env" <<EOF
name=$name piles=$piles guns=$guns heartbeat=$hb subscribers=$subs
t0=$t0 t1=$t1 gw0=$gw0 gw1=$gw1 gwproc0=$gwp0 gwproc1=$gwp1 sim0=$sim0 sim1=$sim1 tail0=$tail0 tail1=$tail1
hb0=$hb0 hb1=$hb1 framesIn0=$fin0 framesIn1=$fin1 rss0=$rss0 rss1=$rss1 nats0=$nats0 nats1=$nats1 cluster=$CLUSTER
natsIn0=${natsmsg0% *} natsOut0=${natsmsg0#* } natsIn1=${natsmsg1% *} natsOut1=${natsmsg1#* }
EOF
    stop_all
    log "$name: done"
}

IFS=, read -r -a PHASE_LIST <<<"$PHASES"
for p in "${PHASE_LIST[@]}"; do
    case "$p" in
        latency) run_phase latency "$LAT_PILES" "$LAT_GUNS" "$LAT_HB" "$SUBS" ;;
        nohub) run_phase nohub "$LAT_PILES" "$LAT_GUNS" "$LAT_HB" 0 ;;
        saturation) run_phase saturation "$SAT_PILES" "$SAT_GUNS" "$SAT_HB" "$SUBS" ;;
        *) echo "bench-hub: unknown phase $p" >&2; exit 2 ;;
    esac
done

cat >"$RUN/run.env" <<EOF
command=$COMMAND
date=$(date -u +"%Y-%m-%d %H:%M UTC")
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n1)
cores=$(nproc)
git=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$( [ -n "$(git status --porcelain --untracked-files=no -- Sources Package.swift 2>/dev/null)" ] && echo " + uncommitted changes in Sources")
load=$(cut -d' ' -f1-3 /proc/loadavg)
others=${OTHERS_AT_START:-none}
EOF

python3 - "$RUN" <<'PY'
import glob, json, os, sys
run = sys.argv[1]
def env(path):
    d = {}
    for line in open(path):
        for kv in line.split():
            if "=" in kv:
                k, v = kv.split("=", 1); d[k] = v
    return d
meta = {}
for line in open(os.path.join(run, "run.env")):
    k, v = line.rstrip("\n").split("=", 1); meta[k] = v
print(f"bench-hub: {meta['date']}, {meta['cpu']}, {meta['cores']} cores, {meta['git']}; results in {run}")
print(f"  load average at the end {meta['load']}; other pilegate processes at the start: {meta['others']}")
rows = {}
for name in ("latency", "nohub", "saturation"):
    wpath = os.path.join(run, name, "window.env")
    if not os.path.exists(wpath): continue
    w = env(wpath)
    secs = float(w["t1"]) - float(w["t0"])
    gwp = float(w["gwproc1"]) - float(w["gwproc0"])
    gw = float(w["gw1"]) - float(w["gw0"]) if min(float(w["gw0"]), float(w["gw1"])) >= 0 else float("nan")
    sim = float(w["sim1"]) - float(w["sim0"]); tl = float(w["tail1"]) - float(w["tail0"])
    hb = max(int(w["hb1"]) - int(w["hb0"]), 0); fin = max(int(w["framesIn1"]) - int(w["framesIn0"]), 0)
    tails = []
    for f in sorted(glob.glob(os.path.join(run, name, "tail-*.out"))):
        lines = [l for l in open(f) if l.startswith("{")]
        if lines: tails.append(json.loads(lines[-1]))
    ev = sum(t["events"] for t in tails)
    tsecs = max([t["seconds"] for t in tails] or [secs])
    r = dict(name=name, piles=w["piles"], guns=w["guns"], hb=w["heartbeat"], subs=int(w["subscribers"]),
             secs=secs, gw=gw, gwproc=gwp, sim=sim, tail=tl, hbps=hb / secs, finps=fin / secs,
             evps=ev / tsecs if tails else 0.0, tails=tails)
    try:
        hub = json.load(open(os.path.join(run, name, "hub.json")))
        r["hub"] = hub
    except Exception:
        r["hub"] = {}
    rows[name] = r
    print(f"\n[{name}] {w['piles']} piles x {w['guns']} guns @ {w['heartbeat']} s, {w['subscribers']} subscriber(s), window {secs:.1f} s")
    print(f"  gateway frames in {fin / secs:,.0f}/s (heartbeats {hb / secs:,.0f}/s); "
          f"RSS {int(w.get('rss0', 0)) / 1048576:.1f} -> {int(w.get('rss1', 0)) / 1048576:.1f} MiB over the window (/proc)")
    if tails:
        print(f"  events delivered  {r['evps']:,.0f}/s ({ev:,} in {tsecs:.1f} s over {len(tails)} subscriber(s))")
        for t in tails:
            l = t["latencyMs"]
            print(f"  {t['instance']}: {t['eventsPerSecond']:,.0f}/s latency ms p50 {l['p50']} p90 {l['p90']} p99 {l['p99']} p99.9 {l['p999']} max {l['max']} mean {l['mean']}")
    if w.get("cluster") == "1":
        nats = float(w["nats1"]) - float(w["nats0"])
        print(f"  cluster: piles on node A, subscribers on node B; gateway CPU below is both nodes' (/proc); "
              f"nats-server {nats:.2f} s ({nats / secs * 100:.0f}% of a core)")
        nin = int(w.get("natsIn1", 0)) - int(w.get("natsIn0", 0))
        nout = int(w.get("natsOut1", 0)) - int(w.get("natsOut0", 0))
        if tails and ev and nin > 0:
            print(f"  nats-server messages in {nin / secs:,.0f}/s, out {nout / secs:,.0f}/s; "
                  f"per delivered event in {nin / secs / (ev / tsecs):.3f}, out {nout / secs / (ev / tsecs):.3f}")
    print(f"  CPU seconds: gateway {gw:.2f} (/v1/stats; /proc {gwp:.2f}) = {gwp / secs * 100:.0f}% of a core, "
          f"simulators {sim:.2f} ({sim / secs * 100:.0f}%), subscribers {tl:.2f} ({tl / secs * 100:.0f}%)")
    if tails and ev:
        print(f"  gateway CPU per delivered event {gwp / ev * 1e6:.1f} us (/proc) / {gw / ev * 1e6:.1f} us (/v1/stats); "
              f"events/s per gateway core {ev / gwp:,.0f}")
        print(f"  subscriber CPU per event {tl / ev * 1e6:.1f} us; simulator CPU per heartbeat {sim / max(hb, 1) * 1e6:.1f} us")
    elif hb:
        print(f"  gateway CPU per heartbeat (no hub) {gwp / hb * 1e6:.1f} us; simulator CPU per heartbeat {sim / hb * 1e6:.1f} us")
    for lane, services in (r["hub"].get("lanes") or {}).items():
        for svc, t in services.items():
            print(f"  hub traffic lane '{lane}' {svc}: routed {t['routed']:,} acks {t['acks']:,} failures {t['failures']} overflows {t['overflows']} ejections {t['ejections']}")
    if r["hub"]: print(f"  hub undeliverable {r['hub'].get('undeliverable')}")
if "latency" in rows and "nohub" in rows and rows["latency"]["tails"]:
    a, b = rows["latency"], rows["nohub"]
    ev = sum(t["events"] for t in a["tails"])
    extra = a["gwproc"] / a["secs"] - b["gwproc"] / b["secs"]
    print(f"\n[hub share] gateway CPU with hub {a['gwproc'] / a['secs']:.3f} s/s, without {b['gwproc'] / b['secs']:.3f} s/s "
          f"-> hub {extra / (ev / a['secs']) * 1e6:.1f} us per event ({(ev / a['secs']) / extra if extra > 0 else float('inf'):,.0f} events/s per core of hub work)")
json.dump(rows, open(os.path.join(run, "results.json"), "w"), indent=1, default=str)
PY
