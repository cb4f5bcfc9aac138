#!/usr/bin/env python3
"""What strangers cost `serve`: memory for forged bodies, and time held by slow clients.

Runs the release binary on loopback, twice:

1. Memory: 20 concurrent 25 MiB webhook bodies with a forged signature (those beyond the
   spill budget get 503, the others 401), and GitHub's signed `ping` sent while they
   stream; prints the statuses, how long the signed delivery took, and
   the server's peak resident memory (VmHWM from /proc/<pid>/status).
2. Time: 300 connections from 127.0.0.2 that trickle one header byte every 2 s; meanwhile
   `/healthz` and a signed delivery from 127.0.0.1, every half second; prints how many of
   the 300 the server closed at once (beyond the per-address cap), when it closed the others
   (the 10 s head deadline), and the latencies seen from 127.0.0.1.

    cargo build --release && benches/strangers.py

Bounded: a fixed number of requests and connections, a deadline on each part, only
loopback addresses, and it stops the server it started. BINARY overrides the binary.
"""

import hashlib
import hmac
import http.client
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BINARY = pathlib.Path(os.environ.get("BINARY", ROOT / "target" / "release" / "alloy-sysext-automation"))
PING = ROOT / "tests" / "fixtures" / "github-webhooks" / "ping" / "payload.json"
SECRET = "benchmark secret"
BODY_BYTES = 25 * 1024 * 1024
SENDERS = 20
TRICKLERS = 300


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data_dir, port):
    env = dict(os.environ, PORT=str(port), DATA_DIR=data_dir, WEBHOOK_SECRET=SECRET,
               LOG_LEVEL="warn", LOG_FORMAT="json")
    for name in ("APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "DATABASE_URL", "TRUSTED_PROXY_HEADER"):
        env.pop(name, None)
    server = subprocess.Popen([str(BINARY), "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    until = time.monotonic() + 30
    while time.monotonic() < until:
        try:
            request(port, "GET", "/healthz")
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    sys.exit("the server did not start")


def request(port, method, path, body=None, headers=None, timeout=60):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request(method, path, body, headers or {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def deliver(port, delivery, body, secret=SECRET):
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Delivery": delivery, "X-GitHub-Event": "ping",
               "X-Hub-Signature-256": signature, "Content-Type": "application/json"}
    return request(port, "POST", "/api/github/webhooks", body, headers)


def peak_rss_mib(server):
    for line in pathlib.Path(f"/proc/{server.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory(port, server, data_dir):
    forged = b"x" * BODY_BYTES
    statuses = [None] * SENDERS
    barrier = threading.Barrier(SENDERS)

    def send(index):
        barrier.wait()
        try:
            statuses[index] = deliver(port, f"forged-{index}", forged, secret="not the secret")
        except OSError as error:
            statuses[index] = f"error: {error}"

    threads = [threading.Thread(target=send, args=(i,)) for i in range(SENDERS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    spill = pathlib.Path(data_dir) / "incoming"
    while time.monotonic() - started < 60 and len(list(spill.glob("*"))) < SENDERS // 2:
        time.sleep(0.01)
    sent = time.monotonic()
    signed = deliver(port, "signed-among-forged", PING.read_bytes())
    signed_ms = (time.monotonic() - sent) * 1000
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.monotonic() - started
    left = len(list(spill.glob("*")))
    print(f"memory: {SENDERS} forged bodies of {BODY_BYTES // (1024 * 1024)} MiB at once, "
          f"done in {elapsed:.1f} s; statuses {sorted(set(map(str, statuses)))}")
    print(f"memory: signed delivery sent while they streamed: {signed} in {signed_ms:.0f} ms")
    print(f"memory: temporary body files left: {left}")
    print(f"memory: peak RSS (VmHWM) {peak_rss_mib(server):.1f} MiB")
    # Those beyond the spill budget (256 MiB, ten bodies of 25 MiB) are refused at their head.
    return signed == 202 and all(s in (401, 503) for s in statuses) and left == 0


def trickle(port):
    head = b"POST /api/github/webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: ping\r\n"
    sockets = []
    opened = time.monotonic()
    for _ in range(TRICKLERS):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        sockets.append(s)
    closed_at = [None] * TRICKLERS
    done = threading.Event()

    def trickler():
        sent = 0
        next_byte = time.monotonic()
        while not done.is_set() and time.monotonic() - opened < 40:
            for i, s in enumerate(sockets):
                if closed_at[i] is None:
                    try:
                        if s.recv(512) is not None:
                            closed_at[i] = time.monotonic()
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed_at[i] = time.monotonic()
            if all(c is not None for c in closed_at):
                break
            if time.monotonic() >= next_byte and sent < len(head):
                for i, s in enumerate(sockets):
                    if closed_at[i] is None:
                        try:
                            s.send(head[sent:sent + 1])
                        except OSError:
                            pass
                sent += 1
                next_byte += 2
            time.sleep(0.05)

    thread = threading.Thread(target=trickler)
    thread.start()
    body = PING.read_bytes()
    health_ms, delivery_ms = [], []
    statuses = set()
    index = 0
    while time.monotonic() - opened < 9:
        sent = time.monotonic()
        statuses.add(request(port, "GET", "/healthz", timeout=10))
        health_ms.append((time.monotonic() - sent) * 1000)
        sent = time.monotonic()
        statuses.add(deliver(port, f"during-trickle-{index}", body))
        delivery_ms.append((time.monotonic() - sent) * 1000)
        index += 1
        time.sleep(0.5)
    thread.join(timeout=60)
    done.set()
    at_once = sum(1 for c in closed_at if c is not None and c - opened < 2)
    held = sorted(c - opened for c in closed_at if c is not None and c - opened >= 2)
    for s in sockets:
        s.close()
    print(f"time: {TRICKLERS} trickling connections from 127.0.0.2: {at_once} closed at once, "
          f"{len(held)} held and closed after {held[0]:.1f}-{held[-1]:.1f} s" if held else
          f"time: {TRICKLERS} trickling connections from 127.0.0.2: {at_once} closed at once")
    print(f"time: from 127.0.0.1 meanwhile: statuses {sorted(statuses)}; "
          f"/healthz max {max(health_ms):.1f} ms, signed delivery max {max(delivery_ms):.1f} ms "
          f"({len(delivery_ms)} each)")
    return max(health_ms) < 1000 and max(delivery_ms) < 1000 and statuses == {200, 202}


def main():
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: run `cargo build --release` first")
    data_dir = tempfile.mkdtemp(prefix="strangers-bench-")
    port = free_port()
    server = start(data_dir, port)
    try:
        ok = memory(port, server, data_dir)
        ok = trickle(port) and ok
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(data_dir)
    print("result:", "ok" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
