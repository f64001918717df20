#!/usr/bin/env python3
"""Helper of scripts/load-test.sh: polls the gateway's /v1/stats and writes the summary table and the "Gateway core (issue 3)" section of docs/BENCHMARKS.md.

Subcommands (all output is plain text for bash):
  snapshot URL FILE                 save /v1/stats to FILE
  wait URL (--t0 T | --go-file F) --online N [--min-logins M] [--timeout S] [--out FILE]
                                    poll every 100 ms until counters.online >= N and
                                    counters.loginsAccepted >= M; print seconds since T (epoch
                                    seconds, or read from F once it appears; F.ready is created
                                    when the poller is warmed up)
  report RUN_DIR [--docs PATH]      print the summary (and update the docs section)
"""

import json
import os
import sys
import time
import urllib.request

SECTION = "## Gateway core (issue 3)"


def fetch(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def cmd_snapshot(url, path):
    doc = fetch(url)
    doc["_takenAt"] = time.time()
    with open(path, "w") as f:
        json.dump(doc, f)


def cmd_wait(args):
    url = args[0]
    opts = dict(zip(args[1::2], args[2::2]))
    if "--go-file" in opts:
        # Started ahead of the clock (Python's start-up is ~0.4 s here): warm up, say ready, then
        # wait for the caller to write the start time into the go file.
        go = opts["--go-file"]
        try:
            fetch(url, timeout=2.0)
        except Exception:
            pass
        open(go + ".ready", "w").close()
        give_up = time.time() + 60
        while not (os.path.exists(go) and os.path.getsize(go) > 0):
            if time.time() > give_up:
                print("0 TIMEOUT (no go)")
                return 1
            time.sleep(0.002)
        with open(go) as f:
            t0 = float(f.read().strip())
    else:
        t0 = float(opts["--t0"])
    target = int(opts["--online"])
    min_logins = int(opts.get("--min-logins", "0"))
    deadline = time.time() + float(opts.get("--timeout", "60"))
    out = opts.get("--out")
    marks = {}  # fraction -> first time seen
    first_conn = None
    timeline = []
    last = None
    while True:
        now = time.time()
        try:
            c = fetch(url, timeout=2.0)["counters"]
        except Exception as e:  # the API may be briefly slow under a storm
            c = None
            timeline.append({"t": round(now - t0, 3), "error": str(e)})
        if c is not None:
            last = c
            online, logins = c["online"], c["loginsAccepted"]
            timeline.append({"t": round(now - t0, 3), "online": online, "connections": c["connections"],
                             "logins": logins})
            if first_conn is None and (c["connections"] > 0 or c["accepted"] > 0) and online < target:
                first_conn = now - t0
            for frac in (0.5, 0.9, 0.99):
                if frac not in marks and online >= frac * target:
                    marks[frac] = now - t0
            if online >= target and logins >= min_logins:
                result = {"seconds": now - t0, "reached": True, "firstConnectionSeen": first_conn,
                          "marks": {str(k): v for k, v in marks.items()}, "timeline": timeline}
                break
        if now >= deadline:
            result = {"seconds": now - t0, "reached": False, "firstConnectionSeen": first_conn,
                      "marks": {str(k): v for k, v in marks.items()}, "timeline": timeline, "last": last}
            break
        time.sleep(max(0.0, 0.1 - (time.time() - now)))
    if out:
        with open(out, "w") as f:
            json.dump(result, f)
    print("%.3f %s" % (result["seconds"], "reached" if result["reached"] else "TIMEOUT"))
    return 0 if result["reached"] else 1


def load(run, name):
    with open(os.path.join(run, name)) as f:
        return json.load(f)


def read_kv(run):
    kv = {}
    with open(os.path.join(run, "run.env")) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                kv[k] = v
    return kv


def delta_dict(a, b):
    keys = set(a) | set(b)
    d = {k: b.get(k, 0) - a.get(k, 0) for k in keys}
    return {k: v for k, v in sorted(d.items()) if v}


def fmt_dict(d):
    return ", ".join("%s %d" % (k, v) for k, v in d.items()) if d else "none"


def cmd_report(run, docs):
    kv = read_kv(run)
    n = int(kv["PILES"])
    idle0 = load(run, "stats-before.json")
    login = load(run, "wait-login.json")
    at_login = load(run, "stats-loggedin.json")
    settled = load(run, "stats-settled.json")
    soak_end = load(run, "stats-soak-end.json")
    storm_before = soak_end
    storm_wait = load(run, "wait-storm.json")
    storm_after = load(run, "stats-storm-end.json")

    rss0 = idle0["process"]["residentBytes"]
    per_pile_login = (at_login["process"]["residentBytes"] - rss0) / n
    per_pile_settled = (settled["process"]["residentBytes"] - rss0) / n
    per_pile_soak = (soak_end["process"]["residentBytes"] - rss0) / n
    soak_secs = soak_end["_takenAt"] - settled["_takenAt"]
    d_cpu = soak_end["process"]["cpuSeconds"] - settled["process"]["cpuSeconds"]
    d_hb = soak_end["counters"]["heartbeats"] - settled["counters"]["heartbeats"]
    d_frames_in = delta_dict(settled["counters"]["framesIn"], soak_end["counters"]["framesIn"])
    d_all_in = sum(d_frames_in.values())
    us_per_hb = d_cpu / d_hb * 1e6 if d_hb else float("nan")
    us_per_frame = d_cpu / d_all_in * 1e6 if d_all_in else float("nan")
    login_cpu_gw = at_login["process"]["cpuSeconds"] - idle0["process"]["cpuSeconds"]
    sim_cpu_login = float(kv.get("SIM_CPU_LOGIN", "nan"))
    sim_cpu_soak = float(kv.get("SIM_CPU_SOAK", "nan"))
    storm_cpu_sim = float(kv.get("SIM_CPU_STORM", "nan"))

    sc_b, sc_a = storm_before["counters"], storm_after["counters"]
    storm_refused = delta_dict(sc_b["refused"], sc_a["refused"])
    storm_closed = delta_dict(sc_b["closed"], sc_a["closed"])
    storm_deferred = sc_a["loginsDeferred"] - sc_b["loginsDeferred"]
    storm_logins = sc_a["loginsAccepted"] - sc_b["loginsAccepted"]
    storm_accepted = sc_a["accepted"] - sc_b["accepted"]
    storm_takeovers = sc_a["takeovers"] - sc_b["takeovers"]
    storm_gw_cpu = storm_after["process"]["cpuSeconds"] - storm_before["process"]["cpuSeconds"]
    storm_bans = sc_a["flapBans"] - sc_b["flapBans"]

    def s(v, unit="s"):
        return "%.2f %s" % (v, unit)

    def ok(flag):
        return "met" if flag else "MISSED"

    login_secs = login["seconds"]
    login_reached = login["reached"]
    marks = login.get("marks", {})
    rows = [
        ("Piles logged in (N)", "%d of %d (%d sims x %d piles, %d guns, %s s heartbeats)" % (
            at_login["counters"]["online"], n, int(kv["SIMS"]), n // int(kv["SIMS"]), int(kv["GUNS"]),
            kv["HEARTBEAT"]), ""),
        ("Start -> all N logged in", ("%.2f s" % login_secs) + ("" if login_reached else " (NOT reached)")
         + "; 50%% at %s, 90%% at %s, 99%% at %s" % tuple(
             ("%.2f s" % marks[k]) if k in marks else "-" for k in ("0.5", "0.9", "0.99")),
         "target <= 2 s: " + ok(login_reached and login_secs <= 2.0)),
        ("CPU during login phase", "gateway %.2f s, simulators %.2f s (%.2f s wall, 2 cores)" % (
            login_cpu_gw, sim_cpu_login, login_secs), ""),
        ("Gateway RSS idle (before)", "%.1f MiB" % (rss0 / 1048576), ""),
        ("RSS/pile when all logged in", "%.0f B (%.2f KiB)" % (per_pile_login, per_pile_login / 1024),
         ""),
        ("RSS/pile idle (settled %s s)" % kv["SETTLE"], "%.0f B (%.2f KiB)" % (per_pile_settled, per_pile_settled / 1024),
         "target <= 3 KB: " + ok(per_pile_settled <= 3000)),
        ("RSS/pile after %.0f s soak" % soak_secs, "%.0f B (%.2f KiB)" % (per_pile_soak, per_pile_soak / 1024),
         "target <= 3 KB: " + ok(per_pile_soak <= 3000)),
        ("Gateway CPU per heartbeat", "%.2f us (%.2f s CPU / %d heartbeats over %.0f s)" % (
            us_per_hb, d_cpu, d_hb, soak_secs), "target <= 3 us: " + ok(us_per_hb <= 3.0)),
        ("  per inbound frame", "%.2f us (%d frames in: %s)" % (us_per_frame, d_all_in, fmt_dict(d_frames_in)), ""),
        ("  simulators' CPU in soak", "%.2f s (%.1f %% of one core)" % (sim_cpu_soak, 100 * sim_cpu_soak / soak_secs), ""),
        ("Reconnect storm: kill -> all N in", ("%.2f s" % storm_wait["seconds"])
         + ("" if storm_wait["reached"] else " (NOT reached)"), ""),
        ("  storm counters", "accepted %d, logins %d, deferred logins %d, takeovers %d, flap bans %d" % (
            storm_accepted, storm_logins, storm_deferred, storm_takeovers, storm_bans), ""),
        ("  storm refused", fmt_dict(storm_refused), ""),
        ("  storm closes by reason", fmt_dict(storm_closed), ""),
        ("  storm CPU", "gateway %.2f s, simulators %.2f s" % (storm_gw_cpu, storm_cpu_sim), ""),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    print("pilegate load test: %s" % kv["COMMAND"])
    print("machine: %s, %s cores; %s; source %s" % (kv["CPU_MODEL"], kv["CORES"], kv["DATE"], kv.get("GIT", "?")))
    for name, value, target in rows:
        print("  %-*s  %s%s" % (width, name, value, ("   [" + target + "]") if target else ""))
    print("  logs: %s" % run)

    if not docs:
        return 0
    lines = [SECTION, "",
             "Measured by `scripts/load-test.sh` on %s (%s, %s cores, %s), Swift release build, gateway and "
             "simulators on the same machine over loopback, source tree %s. Command:" % (
                 kv["DATE"], kv["CPU_MODEL"], kv["CORES"], kv["MEM"], kv.get("GIT", "?")),
             "", "```", kv["COMMAND"], "```", "",
             "Setup: one `pilegate serve` (log level warning, flapping and per-address limits raised for "
             "loopback, accept/login pacing %s/%s per second), %s `pilegate simulate` processes (%s event-loop "
             "thread(s) each, all piles started at once, %s source addresses 127.0.0.x). The stats "
             "endpoint was polled every 100 ms, so times are within +0.1 s." % (
                 kv["ACCEPT_RATE"], kv["LOGIN_RATE"], kv["SIMS"], kv["SIM_THREADS"], kv["SOURCES"]), "",
             "| figure | measured | target |", "|---|---|---|"]
    for name, value, target in rows:
        lines.append("| %s | %s | %s |" % (name.strip(), value.replace("|", "/"), target.split(": ")[0] + (
            " — **" + target.split(": ")[1] + "**" if ": " in target else "") if target else ""))
    notes_path = os.path.join(run, "notes.md")
    if os.path.exists(notes_path):
        with open(notes_path) as f:
            lines += ["", f.read().strip()]
    section = "\n".join(lines).rstrip() + "\n"
    update_docs(docs, section)
    print("  updated %s (section '%s')" % (docs, SECTION[3:]))
    return 0


def update_docs(path, section):
    """Replaces (or appends) only our section; everything else is kept byte for byte."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.rstrip("\n") == SECTION), None)
    if start is None:
        if not text.endswith("\n"):
            text += "\n"
        new = text + "\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    tmp = path + ".tmp-loadtest"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, path)


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, rest = argv[1], argv[2:]
    if cmd == "snapshot":
        cmd_snapshot(rest[0], rest[1])
    elif cmd == "wait":
        return cmd_wait(rest)
    elif cmd == "report":
        docs = rest[2] if len(rest) > 2 and rest[1] == "--docs" else None
        return cmd_report(rest[0], docs)
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
