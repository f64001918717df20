#!/usr/bin/env python3
"""Black-box fuzzer for pilegate's JSON inputs: the backend WebSocket (`GET /v1/events`) and every
HTTP route that takes a body, a path parameter or a query parameter. Run by scripts/fuzz-api.sh,
which starts the gateway and two simulated piles; see docs/FUZZING.md.

Each input is a seed (a valid message or request, from the protocol docs) mutated at the byte
level (flips, cuts, inserted bytes, invalid UTF-8) or at the JSON level (a value replaced by a
hostile one: huge or non-finite numbers, 2^53+1, deep nesting, long strings, lone surrogates,
many keys, duplicate keys, wrong types, log-line injection). The oracle, per input:

- HTTP: an answer within --answer-timeout seconds; status below 500 (504 `timeout` from a pile
  that did not reply is allowed); an error status carries a JSON body with "error" and "message".
- WebSocket: the message is followed by a probe (`ack` of an id that is not in flight); the probe's
  `unknown_id` error must come back within --answer-timeout seconds, so the fuzzed message was
  handled and the socket is still served. A close is allowed only as documented (1009 for a frame
  over 4 MiB, 1007 for a text frame that is not UTF-8); the fuzzer then reconnects.
- The gateway process stays alive and /healthz answers; its RSS is sampled.
- Afterwards the gateway log must not contain a line that a fuzzed value injected.

Every failing input is written to --artifacts as a file that can be replayed (--replay FILE).
Standard library only.
"""
import argparse
import base64
import http.client
import json
import os
import random
import socket
import struct
import sys
import time
import urllib.parse

INJECT = "PILEGATE-FUZZ-INJECTED"

WS_SEEDS = [
    {"type": "subscribe", "service": "billing", "instance": "b-1", "lane": "", "events": ["*"], "maxInFlight": 64},
    {"type": "subscribe", "service": "monitor", "instance": "m-1", "events": ["heartbeat", "pile_online"], "durable": False},
    {"type": "ack", "id": "gw-1-abc-3"},
    {"type": "reply", "id": "gw-1-abc-2", "data": {"result": "same"}},
    {"type": "reply", "id": "gw-1-abc-2", "data": {"billingModel": "0001", "sharpEnergyPrice": 1.2, "sharpServiceFee": 0.8,
                                                  "peakEnergyPrice": 1.0, "peakServiceFee": 0.6, "flatEnergyPrice": 0.7,
                                                  "flatServiceFee": 0.5, "valleyEnergyPrice": 0.3, "valleyServiceFee": 0.2,
                                                  "lossRatio": 0, "periods": ["valley"] * 48}},
    {"type": "command", "requestId": "r1", "pile": "PILE", "command": "read_realtime_data", "args": {"gun": 1}, "timeout": 2},
    {"type": "command", "requestId": "r2", "pile": "PILE", "command": "time_sync", "timeout": 2},
    {"type": "command", "requestId": "r3", "pile": "PILE", "command": "balance_update",
     "args": {"gun": 1, "card": "1234567890123456", "balance": 12.5}, "timeout": 2},
    {"type": "command", "requestId": "r4", "pile": "PILE", "command": "remote_start",
     "args": {"gun": 1, "tradeSerial": "32010600019236012611301200000001", "logicalCard": "1234567890123456",
              "physicalCard": "1234567890123456", "balance": 100}, "timeout": 2},
    {"type": "command", "requestId": "r5", "pile": "PILE", "command": "billing_model_set",
     "args": {"billingModel": "0001", "sharpEnergyPrice": 1.2, "periods": ["flat"] * 48}, "timeout": 2},
    {"type": "drain"},
]

# (method, path, body or None)
HTTP_SEEDS = [
    ("POST", "/v1/piles/PILE/commands/read_realtime_data", {"gun": 1}),
    ("POST", "/v1/piles/PILE/commands/time_sync?timeout=2", {}),
    ("POST", "/v1/piles/PILE/commands/reboot", {"when": "immediately"}),
    ("POST", "/v1/piles/PILE/commands/balance_update?timeout=2", {"gun": 1, "card": "1234567890123456", "balance": 3.5}),
    ("POST", "/v1/piles/PILE/commands/remote_stop?timeout=2&lane=", {"gun": 1}),
    ("PUT", "/v1/piles/32010600099999", {"note": "fuzz"}),
    ("GET", "/v1/piles/PILE", None),
    ("GET", "/v1/piles?online=true&limit=10&after=32010600000000", None),
    ("PUT", "/v1/piles/32010600099999/limits", {"frameRatePerSecond": 20, "frameBurst": 40, "byteRatePerSecond": 8000}),
    ("PUT", "/v1/piles/32010600099999/key", {"key": "00112233445566778899aabbccddeeff0011223344556677", "mode": "cbc", "padding": "pkcs7"}),
    ("PUT", "/v1/lanes", {"version": 0, "rules": [{"lane": "gray", "piles": ["32010600000001"], "firmware": "SIM*",
                                                   "addresses": ["127.0.0.0/8"]}]}),
    ("GET", "/v1/lanes?pile=32010600000001", None),
    ("GET", "/v1/outbox/events?service=billing&after=0&limit=5", None),
    ("POST", "/v1/outbox/replay", {"service": "billing", "from": 1, "to": 10}),
    ("DELETE", "/v1/bans/pile:32010600000001", None),
    ("POST", "/v1/tokens", {"name": "fuzz", "scopes": ["admin:read"], "lanes": ["gray"], "commands": ["time_sync"]}),
    ("DELETE", "/v1/tokens/fuzz", None),
    ("GET", "/v1/tokens", None),
    ("GET", "/v1/hub", None),
]

HOSTILE_VALUES = [
    1e308, -1e308, 0.1, -0.0, 9007199254740993, -9223372036854775809, 18446744073709551616, 1e-320,
    "", "x" * 70000, "\ud800", "\u0000", "😀" * 1000, INJECT, "\n" + INJECT + " level=critical", "../../etc/passwd",
    "' OR 1=1 --", "%00", None, True, False, [], {}, [1] * 5000, {"k%d" % i: i for i in range(2000)},
]
RAW_NUMBERS = ["1e400", "-1e400", "NaN", "Infinity", "1" * 400, "0." + "0" * 400 + "1", "1e-400", "-", "01", "1.",
               ".5", "0x10", "1_000"]


def deep(n, kind):
    return ("[" * n + "]" * n) if kind == 0 else ('{"a":' * n + "1" + "}" * n)


class Mutator:
    def __init__(self, rng, pile):
        self.rng = rng
        self.pile = pile

    def value_paths(self, v, path=()):
        yield path
        if isinstance(v, dict):
            for k, x in v.items():
                yield from self.value_paths(x, path + (k,))
        elif isinstance(v, list):
            for i, x in enumerate(v[:4]):
                yield from self.value_paths(x, path + (i,))

    def set_path(self, v, path, new):
        if not path:
            return new
        head, rest = path[0], path[1:]
        if isinstance(v, dict):
            v = dict(v)
            v[head] = self.set_path(v[head], rest, new)
        else:
            v = list(v)
            v[head] = self.set_path(v[head], rest, new)
        return v

    def json_level(self, seed):
        r = self.rng
        paths = list(self.value_paths(seed))
        path = r.choice(paths)
        choice = r.random()
        if choice < 0.5:
            v = self.set_path(seed, path, r.choice(HOSTILE_VALUES))
            return json.dumps(v, ensure_ascii=r.random() < 0.5).encode("utf-8", "surrogatepass")
        marker = "\u0001MARK\u0001"
        v = self.set_path(seed, path, marker)
        text = json.dumps(v, ensure_ascii=False)
        if choice < 0.7:
            raw = r.choice(RAW_NUMBERS)
        elif choice < 0.85:
            raw = deep(r.choice([10, 100, 511, 512, 513, 1000, 10000, 100000]), r.randrange(2))
        else:
            # a duplicate key, or a key that is not in the protocol
            raw = '"dup", "type": "ack", "type": "drain", "zz": "1"'
        text = text.replace(json.dumps(marker, ensure_ascii=False), raw, 1)
        return text.encode("utf-8", "surrogatepass")

    def byte_level(self, data):
        r = self.rng
        b = bytearray(data)
        for _ in range(r.randint(1, 4)):
            op = r.randrange(6)
            if not b:
                b = bytearray(b"{")
            i = r.randrange(len(b))
            if op == 0:
                b[i] = r.randrange(256)
            elif op == 1:
                del b[i:i + r.randint(1, 16)]
            elif op == 2:
                b[i:i] = bytes(r.randrange(256) for _ in range(r.randint(1, 8)))
            elif op == 3:
                b = b[:i]
            elif op == 4:
                j = r.randrange(len(b))
                b[i:i] = b[min(i, j):max(i, j)][:256]
            else:
                b[i:i] = r.choice([b"\xff\xfe", b"\xc0\x80", b"\xed\xa0\x80", b'\\u', b'\\', b'"', b"\x00"])
        return bytes(b)

    def message(self, seed):
        seed = json.loads(json.dumps(seed).replace("PILE", self.pile))
        base = json.dumps(seed).encode()
        return self.json_level(seed) if self.rng.random() < 0.6 else self.byte_level(base)

    def path(self, path):
        r = self.rng
        path = path.replace("PILE", self.pile)
        if r.random() < 0.7:
            return path
        parsed = urllib.parse.urlsplit(path)
        segs = parsed.path.split("/")
        i = r.randrange(1, len(segs))
        segs[i] = r.choice(["", "9" * 40, "3201060001923", "32010600019236x", "%2F..%2F", "%00", "%FF%FE", "é" * 5,
                            INJECT, "a" * 5000, "-1", "0"])
        query = parsed.query
        if r.random() < 0.5:
            query = r.choice(["timeout=1e300", "timeout=nan", "timeout=-1", "timeout=0.001", "timeout=3601", "limit=-5",
                              "limit=99999999999999999999", "after=%00", "online=maybe", "lane=" + "x" * 3000,
                              "timeout=2&timeout=3", "%zz=1", "a" * 9000 + "=1"])
        p = "/".join(urllib.parse.quote(s, safe="%:") for s in segs)
        return p + ("?" + query if query else "")


class WebSocket:
    def __init__(self, host, port, timeout, token):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Authorization: Bearer {token}\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"upgrade refused: {status!r}")
        self.buf = head.split(b"\r\n\r\n", 1)[1]
        self.close_code = None

    def send(self, payload, opcode=1):
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x80 | opcode])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def recv(self):
        """The next text message (str), or raises ConnectionError on close (close_code set)."""
        while True:
            self._need(2)
            b0, b1 = self.buf[0], self.buf[1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                self._need(4)
                n, off = struct.unpack(">H", self.buf[2:4])[0], 4
            elif n == 127:
                self._need(10)
                n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
            self._need(off + n)
            payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
            op = b0 & 0x0F
            if op == 8:
                self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                raise ConnectionError(f"closed by the gateway with {self.close_code}")
            if op == 9:
                self.send(payload, opcode=10)
                continue
            if op in (1, 2):
                return payload.decode("utf-8", "replace")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return -1
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api-port", type=int, required=True)
    ap.add_argument("--pile", required=True, help="an online pile id (simulated)")
    ap.add_argument("--pid", type=int, required=True, help="the gateway's pid")
    ap.add_argument("--log", required=True, help="the gateway's log file")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--answer-timeout", type=float, default=15)
    ap.add_argument("--artifacts", default="Fuzz/artifacts")
    ap.add_argument("--ws-share", type=float, default=0.5, help="share of inputs sent over the WebSocket (0…1)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    mut = Mutator(rng, args.pile)
    host = "127.0.0.1"
    os.makedirs(args.artifacts, exist_ok=True)
    failures, stats = [], {"ws": 0, "http": 0, "ws_closed": {}, "http_status": {}, "max_rss_kb": 0}
    ws = None
    probe = 0
    sockets = 0
    deadline = time.time() + args.seconds

    auth_state = {"secret": None}
    recent = []  # the inputs before a failure: what the gateway was busy with

    last_request = {}

    def fail(kind, data, why):
        name = os.path.join(args.artifacts, f"api-{kind}-{len(failures)}.bin")
        with open(name, "wb") as f:
            f.write(data)
        with open(name + ".before", "w") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {why}\n")
            for t, k, d in recent[-30:]:
                f.write(f"{t:.3f} {k} {d[:300]!r}\n")
        # Is the whole gateway stuck, or only that request?
        after = []
        for probe_path in ("/healthz", "/v1/stats", f"/v1/piles/{args.pile}"):
            t = time.time()
            try:
                c = http.client.HTTPConnection(host, args.api_port, timeout=5)
                c.request("GET", probe_path, headers={"Authorization": "Bearer " + auth_state["secret"]} if auth_state["secret"] else {})
                st = c.getresponse().status
                c.close()
            except (OSError, http.client.HTTPException) as e:
                st = type(e).__name__
            after.append(f"{probe_path} -> {st} in {time.time() - t:.2f} s")
        if last_request and kind == "http":
            t = time.time()
            try:
                c = http.client.HTTPConnection(host, args.api_port, timeout=5)
                c.request(last_request["method"], last_request["path"], body=last_request["body"], headers=last_request["headers"])
                st = c.getresponse().status
                c.close()
            except (OSError, http.client.HTTPException) as e:
                st = type(e).__name__
            after.append(f"the same request again -> {st} in {time.time() - t:.2f} s")
        with open(name + ".before", "a") as f:
            f.write("after: " + "; ".join(after) + "\n")
        failures.append(f"{kind}: {why} (input in {name})")
        print(f"FAIL {kind}: {why} (input in {name})", flush=True)

    # An admin token first: once any token exists (the fuzzed POST /v1/tokens makes some), every
    # call needs one. Most inputs carry it; some carry none or a damaged one.
    c = http.client.HTTPConnection(host, args.api_port, timeout=10)
    c.request("POST", "/v1/tokens", body=json.dumps({"name": "fuzz-admin", "scopes": [
        "events:subscribe", "commands:send", "admin:read", "admin:write"]}), headers={"Content-Type": "application/json"})
    resp = c.getresponse()
    secret = json.loads(resp.read())["secret"]
    auth_state["secret"] = secret
    with open(os.path.join(args.artifacts, "api-token"), "w") as f:
        f.write(secret + "\n")  # for replaying a failure by hand against the same gateway
    c.close()

    def auth():
        x = rng.random()
        if x < 0.9:
            return "Bearer " + secret
        return rng.choice(["", "Bearer", "Bearer " + secret[:-1], "Basic " + secret, "Bearer " + secret + "\x00",
                           "Bearer " + "a" * 10000, "bearer " + secret])

    i = 0
    while time.time() < deadline:
        i += 1
        if i % 50 == 0:
            try:
                os.kill(args.pid, 0)
            except OSError:
                fail("process", b"", "the gateway exited")
                break
            stats["max_rss_kb"] = max(stats["max_rss_kb"], rss_kb(args.pid))
        del recent[:-30]
        if rng.random() < args.ws_share:
            data = mut.message(rng.choice(WS_SEEDS))
            recent.append((time.time(), "ws", data))
            try:
                if ws is None:
                    # Subscribed first, so the probe's ack is answered with its id (before a
                    # subscription every ack gets `not_subscribed`, which names no id).
                    ws = WebSocket(host, args.api_port, args.answer_timeout, secret)
                    sockets += 1
                    ws.send(json.dumps({"type": "subscribe", "service": "fuzz", "instance": f"f-{sockets}",
                                        "events": ["pile_online"], "durable": False}).encode())
                ws.send(data)
                probe += 1
                pid = f"fuzz-probe-{probe}"
                ws.send(json.dumps({"type": "ack", "id": pid}).encode())
                t0 = time.time()
                while True:
                    msg = ws.recv()
                    if pid in msg:
                        break
                    if time.time() - t0 > args.answer_timeout:
                        raise TimeoutError("no answer to the probe")
                stats["ws"] += 1
            except (ConnectionError, TimeoutError, socket.timeout, OSError) as e:
                code = ws.close_code if ws else None
                stats["ws_closed"][str(code)] = stats["ws_closed"].get(str(code), 0) + 1
                allowed = code == 1009 and len(data) > 4 << 20 or code == 1007
                if not allowed:
                    fail("ws", data, f"{type(e).__name__}: {e}")
                if ws:
                    ws.close()
                ws = None
        else:
            method, path, body = rng.choice(HTTP_SEEDS)
            path = mut.path(path)
            data = b"" if body is None else mut.message(body)
            if body is None and rng.random() < 0.3:
                data = mut.byte_level(b'{"a":1}')
            recent.append((time.time(), "http " + method + " " + path, data))
            try:
                c = http.client.HTTPConnection(host, args.api_port, timeout=args.answer_timeout)
                headers = {"Content-Type": "application/json"}
                a = auth()
                if a:
                    headers["Authorization"] = a
                recent[-1] = (recent[-1][0], recent[-1][1] + f" [Authorization: {a[:20]!r}…]", data)
                last_request.update(method=method, path=path, body=data or None, headers=headers)
                c.request(method, path, body=data or None, headers=headers)
                resp = c.getresponse()
                text = resp.read()
                c.close()
                stats["http"] += 1
                stats["http_status"][resp.status] = stats["http_status"].get(resp.status, 0) + 1
                if resp.status >= 500 and resp.status != 504:
                    fail("http", f"{method} {path}\n".encode() + data, f"status {resp.status}: {text[:200]!r}")
                elif resp.status >= 400 and method != "HEAD":
                    try:
                        doc = json.loads(text)
                        if not (isinstance(doc, dict) and "error" in doc and "message" in doc):
                            raise ValueError("no error/message")
                    except ValueError as e:
                        fail("http", f"{method} {path}\n".encode() + data, f"status {resp.status} body not an error document ({e}): {text[:200]!r}")
            except (OSError, http.client.HTTPException) as e:
                fail("http", f"{method} {path}\n".encode() + data, f"{type(e).__name__}: {e}")
    if ws:
        ws.close()
    try:
        c = http.client.HTTPConnection(host, args.api_port, timeout=10)
        c.request("GET", "/healthz")
        if c.getresponse().status != 200:
            fail("process", b"", "/healthz did not answer 200 at the end")
    except OSError as e:
        fail("process", b"", f"/healthz at the end: {e}")
    injected = [line for line in open(args.log, errors="replace") if line.startswith(INJECT) or line.startswith(" level=critical")]
    if injected:
        fail("log", "".join(injected[:5]).encode(), f"{len(injected)} log lines start with a fuzzed value")
    stats["failures"] = len(failures)
    stats["executions"] = stats["ws"] + stats["http"]
    stats["per_second"] = round(stats["executions"] / args.seconds, 1)
    print(json.dumps(stats, sort_keys=True), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
