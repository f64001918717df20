#!/usr/bin/env python3
"""The nats-server's own CPU per message on this machine: the floor under the cluster's figures.

Starts a nats-server of its own (loopback, a free port, no JetStream), one subscriber and one
publisher (plain sockets, no client library), and publishes --rate messages a second for
--seconds, in writes of --per-write messages each (1: every message wakes the server on its own,
as the relay's small batches do at moderate rates). Reports the server's CPU per message, from
/proc, and whether the subscriber got every message.

Usage: scripts/bench-nats-floor.py [--rate 3000] [--seconds 20] [--per-write 1] [--payload 600]
           [--procs N]   (GOMAXPROCS for the server; unset: the number of cores)
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.recv(4096)  # INFO
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
    got = b""
    while b"PONG" not in got:
        got += s.recv(4096)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--per-write", type=int, default=1)
    ap.add_argument("--payload", type=int, default=600)
    ap.add_argument("--procs", type=int)
    a = ap.parse_args()
    server = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.path.exists(server):
        sys.exit("nats-server missing (scripts/setup.sh installs it)")
    port = free_port()
    env = dict(os.environ)
    if a.procs:
        env["GOMAXPROCS"] = str(a.procs)
    store = tempfile.mkdtemp(prefix="pilegate-natsfloor.")
    proc = subprocess.Popen(["timeout", str(int(a.seconds) + 60), server, "-a", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        # The server is timeout's child.
        children = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
        pid = int(children[0]) if children else proc.pid
        sub = connect(port)
        sub.sendall(b"SUB floor 1\r\nPING\r\n")
        got = b""
        while b"PONG" not in got:
            got += sub.recv(4096)
        received = [0]
        stop = threading.Event()

        def read():
            sub.settimeout(0.5)
            buf = b""
            while not stop.is_set():
                try:
                    chunk = sub.recv(1 << 20)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                buf += chunk
                received[0] += buf.count(b"MSG floor 1 ")
                # keep an unfinished line for the next read
                cut = buf.rfind(b"\r\n")
                buf = buf[cut + 2:] if cut >= 0 else buf
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        pub = connect(port)
        message = b"PUB floor %d\r\n" % a.payload + b"x" * a.payload + b"\r\n"
        chunk = message * a.per_write
        writes = int(a.rate * a.seconds / a.per_write)
        interval = a.per_write / a.rate
        cpu0 = cpu_seconds(pid)
        t0 = time.monotonic()
        for i in range(writes):
            pub.sendall(chunk)
            delay = t0 + (i + 1) * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.monotonic() - t0
        time.sleep(1)
        cpu = cpu_seconds(pid) - cpu0
        stop.set()
        sent = writes * a.per_write
        print(f"nats-server floor: {sent:,} messages of {a.payload} B in {elapsed:.1f} s ({sent / elapsed:,.0f}/s), "
              f"{a.per_write} per write, GOMAXPROCS {a.procs or 'default'}")
        print(f"  server CPU {cpu:.2f} s = {cpu / elapsed * 100:.0f}% of a core, {cpu / sent * 1e6:.1f} us per message "
              f"(in and out); subscriber got {received[0]:,}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
