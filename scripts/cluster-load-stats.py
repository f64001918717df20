#!/usr/bin/env python3
"""Helper of scripts/cluster-load.sh: snapshots of every node, the nats-server and the load processes,
and the report.

Subcommands:
  snapshot FILE --apis URL,URL,... --nats-monitor URL --nodes PID,PID,... --nats PID --sims PID --tails PID,...
      save each node's /v1/stats (counters, process, cluster), its process tree's CPU seconds and RSS
      from /proc, the nats-server's /varz and /jsz and its CPU/RSS, and the CPU of the simulators'
      and subscribers' process trees, with the time taken
  report RUN_DIR
      print the figures (markdown) from RUN_DIR's snapshots, simulate summary and tail summaries
"""

import glob
import json
import os
import sys
import time
import urllib.request

HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def fetch(url, timeout=10.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.load(r)
    except Exception as e:  # a node that does not answer is recorded, not fatal
        return {"_error": str(e)}


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(d))
        except Exception:
            pass
    return kids


def tree(pid, kids):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def proc_figures(pid, kids):
    """CPU seconds (user + system, whole tree) and RSS bytes (whole tree) of pid."""
    cpu, rss = 0.0, 0
    if not pid:
        return {"cpu": 0.0, "rss": 0}
    for p in tree(int(pid), kids):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / HZ
            with open(f"/proc/{p}/statm") as f:
                rss += int(f.read().split()[1]) * PAGE
        except Exception:
            pass
    return {"cpu": cpu, "rss": rss}


def cmd_snapshot(path, args):
    opts = dict(zip(args[0::2], args[1::2]))
    kids = children_map()
    apis = [a for a in opts.get("--apis", "").split(",") if a]
    pids = [p for p in opts.get("--nodes", "").split(",")]
    snap = {"t": time.time(), "nodes": [], "nats": {}, "sims": {}, "tails": {}}
    # The processes' CPU first: the subscribers end soon after a window closes, and the nodes'
    # /v1/stats take a while to answer under load.
    snap["sims"] = proc_figures(opts.get("--sims"), kids)
    tails = {"cpu": 0.0, "rss": 0}
    for p in [p for p in opts.get("--tails", "").split(",") if p]:
        f = proc_figures(p, kids)
        tails["cpu"] += f["cpu"]
        tails["rss"] += f["rss"]
    snap["tails"] = tails
    for i, api in enumerate(apis):
        d = fetch(api + "/v1/stats")
        c = d.get("counters", {})
        node = {
            "api": api,
            "online": c.get("online"),
            "heartbeats": c.get("heartbeats"),
            "loginsAccepted": c.get("loginsAccepted"),
            "framesIn": sum((c.get("framesIn") or {}).values()) if isinstance(c.get("framesIn"), dict) else c.get("framesIn"),
            "process": d.get("process", {}),
            "cluster": (d.get("extensions") or {}).get("cluster"),
            "outbox": (d.get("extensions") or {}).get("outbox"),
            "error": d.get("_error"),
        }
        node["proc"] = proc_figures(pids[i] if i < len(pids) else None, kids)
        snap["nodes"].append(node)
    mon = opts.get("--nats-monitor")
    if mon:
        v = fetch(mon + "/varz")
        j = fetch(mon + "/jsz?streams=true")
        snap["nats"] = {
            "varz": {k: v.get(k) for k in ("mem", "cpu", "in_msgs", "out_msgs", "in_bytes", "out_bytes", "connections", "slow_consumers")},
            "jsz": {k: j.get(k) for k in ("streams", "consumers", "messages", "bytes", "api")},
            "proc": proc_figures(opts.get("--nats"), kids),
        }
    with open(path, "w") as f:
        json.dump(snap, f)


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return None


def env(path):
    out = {}
    try:
        for line in open(path):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                out[k] = v
    except Exception:
        pass
    return out


def mib(b):
    return f"{b / 1048576:,.1f} MiB"


def cmd_report(run):
    meta = env(os.path.join(run, "run.env"))
    s0 = load(os.path.join(run, "snap-0-empty.json"))
    s1 = load(os.path.join(run, "snap-1-settled.json"))
    s2 = load(os.path.join(run, "snap-2-idle-end.json"))
    s3 = load(os.path.join(run, "snap-3-latency-start.json"))
    s4 = load(os.path.join(run, "snap-4-latency-end.json"))
    s5 = load(os.path.join(run, "snap-5-bills-end.json"))
    sim = load(os.path.join(run, "simulate-summary.json")) or {}
    piles = int(meta.get("PILES", "0"))
    print(f"cluster-load: {meta.get('DATE')}, {meta.get('CPU_MODEL')}, {meta.get('CORES')} cores, {meta.get('MEM')}, "
          f"commit {meta.get('GIT')}; results in {run}")
    print(f"command: {meta.get('COMMAND')}")
    if meta.get("STANDALONE") == "1":
        print("standalone baseline: the nodes are not in cluster mode; the subscribers see only node 1's piles")
    print(f"load average at the start: {meta.get('LOAD_START')}; at the end: {meta.get('LOAD_END', '?')}; "
          f"other pilegate runs at the start: {meta.get('OTHERS') or 'none'}")
    print()
    print("| figure | measured | target |")
    print("|---|---|---|")
    t = sim.get("timeToAllLoggedInSeconds")
    li = sim.get("loggedIn")
    print(f"| piles | {piles:,} x {meta.get('GUNS')} guns @ {meta.get('HEARTBEAT')} s over {meta.get('NODES')} nodes, "
          f"{meta.get('WORKERS')} simulate workers, {float(meta.get('CHARGING', '0')) * 100:.0f} % charging | |")
    target_login = "≤ 30 s"
    verdict = "" if t is None else (" — met" if t <= 30 else f" — **missed by {t - 30:.1f} s**")
    tl = "not reached" if t is None else f"**{t:.2f} s**"
    print(f"| start → all logged in | {tl} (logged in at the end: {li}; login p50 {sim.get('loginLatencyP50Ms')} ms, "
          f"p99 {sim.get('loginLatencyP99Ms')} ms; errors {sim.get('errors')}, reconnects {sim.get('reconnects')}) | {target_login}{verdict} |")
    if s0 and s2:
        per = []
        for a, b in zip(s0["nodes"], s2["nodes"]):
            on = b.get("online") or 0
            if on:
                per.append((b["proc"]["rss"] - a["proc"]["rss"]) / on)
        if per:
            print(f"| RSS per pile per node (idle, after the idle window) | mean **{sum(per) / len(per):,.0f} B**, "
                  f"min {min(per):,.0f}, max {max(per):,.0f} B; node RSS {mib(sum(n['proc']['rss'] for n in s2['nodes']) / len(s2['nodes']))} "
                  f"on average with {sum((n.get('online') or 0) for n in s2['nodes']) / len(s2['nodes']):,.0f} piles | |")
        print(f"| NATS server RSS | {mib(s2['nats'].get('proc', {}).get('rss', 0))} idle window; "
              f"{mib((s5 or s2)['nats'].get('proc', {}).get('rss', 0))} after the bills | |")
    if s1 and s2:
        dt = s2["t"] - s1["t"]
        cpu = sum(b["proc"]["cpu"] - a["proc"]["cpu"] for a, b in zip(s1["nodes"], s2["nodes"]))
        hb = sum((b.get("heartbeats") or 0) - (a.get("heartbeats") or 0) for a, b in zip(s1["nodes"], s2["nodes"]))
        nats = s2["nats"]["proc"]["cpu"] - s1["nats"]["proc"]["cpu"]
        simc = s2["sims"]["cpu"] - s1["sims"]["cpu"]
        if hb:
            single = float(meta.get("SINGLE_NODE_US", "16.2"))
            us = cpu / hb * 1e6
            print(f"| gateway CPU per heartbeat, no subscriber ({dt:.0f} s window) | **{us:.1f} µs** ({cpu:.2f} s over "
                  f"{meta.get('NODES')} nodes / {hb:,} heartbeats, {hb / dt:,.0f}/s; all gateway work incl. charging 0x13 and bills); "
                  f"with the NATS server's CPU {(cpu + nats) / hb * 1e6:.1f} µs; simulators {simc / dt * 100:.0f} % of a core | "
                  f"single node {single} µs: +{(us / single - 1) * 100:.0f} % (≤ +10 %{' — met' if us <= single * 1.1 else ' — **missed**'}) |")
    tails = []
    for f in sorted(glob.glob(os.path.join(run, "tail-*.log"))):
        for line in open(f):
            if '"tail":"summary"' in line:
                tails.append(json.loads(line))
    if tails:
        bench = [x for x in tails if x.get("service") == "bench"]
        ev = sum(x["events"] for x in bench)
        secs = max([x["seconds"] for x in bench] or [1])
        parts = "; ".join(f"{x['instance']}: {x['eventsPerSecond']:,.0f}/s p50 {x['latencyMs']['p50']} p99 {x['latencyMs']['p99']} "
                          f"p99.9 {x['latencyMs']['p999']} max {x['latencyMs']['max']} ms" for x in bench)
        worst = max([x["latencyMs"]["p99"] or 0 for x in bench] or [0])
        print(f"| pile → backend latency (subscribers on node 1, events from all nodes) | **{ev / secs:,.0f} events/s**; {parts} | "
              f"p99 ≤ 5 ms at 20,000 events/s{' — met' if worst and worst <= 5 and ev / secs >= 19000 else ' — **missed**'} |")
        billing = [x for x in tails if x.get("service") == "billing"]
        for x in billing:
            print(f"| bills at the billing subscriber | {x['events']:,} events, p50 {x['latencyMs']['p50']} p99 {x['latencyMs']['p99']} ms | |")
    if s3 and s4:
        dt = s4["t"] - s3["t"]
        cpu = sum(b["proc"]["cpu"] - a["proc"]["cpu"] for a, b in zip(s3["nodes"], s4["nodes"]))
        nats = s4["nats"]["proc"]["cpu"] - s3["nats"]["proc"]["cpu"]
        tl = s4["tails"]["cpu"] - s3["tails"]["cpu"]
        simc = s4["sims"]["cpu"] - s3["sims"]["cpu"]
        # A subscriber that ended before the closing snapshot (a window stretched by a saturated
        # machine) takes its CPU with it: say so rather than print a negative share.
        subs = f"{tl / dt:.2f}" if tl >= 0 else "not measured (a subscriber ended before the window closed)"
        print(f"| CPU in the latency window ({dt:.0f} s) | gateways {cpu / dt:.2f} cores, NATS {nats / dt:.2f}, simulators {simc / dt:.2f}, "
              f"subscribers {subs} (of 2) | |")
    bps = sim.get("billsAckedPerSecond")
    if bps is not None:
        print(f"| durable bills/s (0x40s per second, bill load start → last 0x40) | **{bps:,.0f}/s** ({sim.get('billsAckedInLoad'):,} bills; "
              f"0x40 latency p50 {sim.get('ackLatencyP50Ms')} ms, p99 {sim.get('ackLatencyP99Ms')} ms; abandoned {sim.get('billsAbandoned')}, "
              f"pending at the end {sim.get('billsPending')}) | ≥ 5,000/s{' — met' if bps >= 5000 else ' — **missed**'} |")
    if s4 and s5:
        a, b = s4["nats"].get("jsz", {}), s5["nats"].get("jsz", {})
        # The monitor may not answer a snapshot when the server is starved of CPU (300,000 piles).
        if a and b and a.get("messages") is not None and b.get("messages") is not None:
            dt = s5["t"] - s4["t"]
            print(f"| JetStream during the bill phase | {b.get('messages', 0) - a.get('messages', 0):,} messages stored in {dt:.0f} s "
                  f"({b.get('streams')} streams, {b.get('consumers')} consumers) | |")
    print()
    print("per node (idle window end):")
    if s2:
        for n in s2["nodes"]:
            cl = n.get("cluster") or {}
            members = len(cl.get("members", cl.get("nodes", []))) if isinstance(cl, dict) else "?"
            print(f"  {n['api']}: online {n.get('online')}, RSS {mib(n['proc']['rss'])}, CPU {n['proc']['cpu']:.1f} s, "
                  f"cluster members seen {members}{', error ' + n['error'] if n.get('error') else ''}")


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    if sys.argv[1] == "snapshot":
        cmd_snapshot(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "report":
        cmd_report(sys.argv[2])
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
