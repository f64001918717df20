#!/usr/bin/env python3
"""Kernel memory of one idle, accepted TCP connection, as the gateway holds it per pile.

The gateway's RSS per pile (docs/BENCHMARKS.md, Gateway core) is user space only. Each pile is
also a socket in the kernel: the TCP socket, its inode, dentry and file, and an epoll entry
(NIO watches every channel). Those live in slab caches, outside RSS, but count against the
machine's memory and against a container's memory cgroup. This opens N connections over
loopback, accepts them, registers the accepted ends with epoll as NIO does, and reads the
growth of those slab caches from /proc/slabinfo (needs root). Both ends are on this host, so
per-socket caches are divided by 2N and the epoll caches (server side only) by N.

Usage (as root; keep N under the open-file limit / 2):
    python3 scripts/kernel-socket-memory.py [N=8000] [ROUNDS=3]
Only loopback; everything is closed at exit.
"""

import select
import socket
import sys
import time

# Slab caches an accepted, idle TCP socket uses, and on how many ends of a loopback pair.
PER_SOCKET = ["TCP", "sock_inode_cache", "dentry", "filp"]
SERVER_ONLY = ["eventpoll_epi", "eventpoll_pwq"]


def slabinfo():
    caches = {}
    with open("/proc/slabinfo") as f:
        for line in f.readlines()[2:]:
            fields = line.split()
            caches[fields[0]] = (int(fields[1]), int(fields[3]))  # active objects, object size
    return caches


def measure(n):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    epoll = select.epoll()
    clients, servers = [], []
    before = slabinfo()
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        s, _ = listener.accept()
        epoll.register(s.fileno(), select.EPOLLIN)
        clients.append(c)
        servers.append(s)
    time.sleep(0.5)
    after = slabinfo()
    result = {}
    for name in PER_SOCKET + SERVER_ONLY:
        if name not in after:
            continue
        count = after[name][0] - before.get(name, (0, 0))[0]
        ends = n if name in SERVER_ONLY else 2 * n
        result[name] = (count / ends, after[name][1])
    for s in clients + servers:
        s.close()
    epoll.close()
    listener.close()
    return result


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for r in range(rounds):
        result = measure(n)
        total = sum(objects * size for objects, size in result.values())
        parts = ", ".join(f"{name} {objects:.2f} x {size} B" for name, (objects, size) in result.items())
        print(f"round {r + 1}: {n} connections: {total:,.0f} B of slab per accepted connection ({parts})")
        time.sleep(1)


if __name__ == "__main__":
    main()
