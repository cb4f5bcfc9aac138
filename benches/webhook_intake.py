#!/usr/bin/env python3
"""Webhook intake benchmark: 2,000 signed deliveries at 200 per second to `serve` on loopback.

Sends a real `issue_comment` payload (tests/fixtures) with a valid signature and a fresh
X-GitHub-Delivery each time, paced at RATE per second from a few sender threads, and records
how long each acknowledgement took. Then it kills the server with SIGKILL right after the last
acknowledgement, restarts it on the same DATA_DIR, and checks through GET /api/deliveries/{id}
that every delivery is still there, exactly once.

    cargo build --release && benches/webhook_intake.py        # COUNT=2000 RATE=200

Bounded: it sends COUNT requests at most, gives up after DEADLINE seconds, talks only to
127.0.0.1, and stops the server it started.
"""

import hashlib
import hmac
import http.client
import json
import os
import pathlib
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BINARY = ROOT / "target" / "release" / "alloy-sysext-automation"
PAYLOAD = ROOT / "tests" / "fixtures" / "github-webhooks" / "issue_comment" / "created.payload.json"
COUNT = int(os.environ.get("COUNT", "2000"))
RATE = float(os.environ.get("RATE", "200"))
SENDERS = 8
DEADLINE = COUNT / RATE * 3 + 30
SECRET = "benchmark secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data_dir, port):
    env = dict(os.environ, PORT=str(port), DATA_DIR=data_dir, WEBHOOK_SECRET=SECRET,
               LOG_LEVEL="warn", LOG_FORMAT="json")
    for name in ("APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "DATABASE_URL"):
        env.pop(name, None)
    server = subprocess.Popen([str(BINARY), "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    until = time.monotonic() + 30
    while time.monotonic() < until:
        try:
            get(port, "/healthz")
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    sys.exit("the server did not start")


def get(port, path):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def main():
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: run `cargo build --release` first")
    body = PAYLOAD.read_bytes()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    data_dir = tempfile.mkdtemp(prefix="webhook-bench-")
    port = free_port()
    server = start(data_dir, port)

    ids = [f"b0000000-0000-4000-8000-{i:012d}" for i in range(COUNT)]
    latencies = [None] * COUNT
    statuses = [None] * COUNT
    started = time.monotonic()
    next_index = iter(range(COUNT))
    lock = threading.Lock()

    def sender():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while True:
            with lock:
                index = next(next_index, None)
            if index is None or time.monotonic() - started > DEADLINE:
                break
            # Pace: delivery i is due at i / RATE seconds after the start.
            delay = started + index / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            headers = {"X-GitHub-Delivery": ids[index], "X-GitHub-Event": "issue_comment",
                       "X-Hub-Signature-256": signature, "Content-Type": "application/json"}
            sent = time.monotonic()
            try:
                connection.request("POST", "/api/github/webhooks", body, headers)
                response = connection.getresponse()
                response.read()
                statuses[index] = response.status
            except OSError as error:
                statuses[index] = f"error: {error}"
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            latencies[index] = time.monotonic() - sent
        connection.close()

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    server.send_signal(signal.SIGKILL)
    server.wait()

    acknowledged = sum(1 for s in statuses if isinstance(s, int) and 200 <= s < 300)
    measured = sorted(l for l in latencies if l is not None)
    def percentile(p):
        return measured[min(len(measured) - 1, int(len(measured) * p))] * 1000

    server = start(data_dir, port)
    found = 0
    for delivery in ids:
        status, text = get(port, f"/api/deliveries/{delivery}")
        if status == 200 and json.loads(text)["event"] == "issue_comment":
            found += 1
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
    database = sqlite3.connect(pathlib.Path(data_dir) / "alloy-sysext.db")
    rows = database.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM deliveries").fetchone()
    database.close()

    print(f"deliveries: {COUNT} at {RATE:.0f}/s over {elapsed:.1f} s, {SENDERS} connections")
    print(f"acknowledged with 2xx: {acknowledged}/{COUNT}")
    print(f"ack latency ms: p50 {percentile(0.50):.2f}, p90 {percentile(0.90):.2f}, "
          f"p99 {percentile(0.99):.2f}, max {measured[-1] * 1000:.2f}")
    print(f"after kill -9 and restart: {found}/{COUNT} found; (rows, distinct ids) = {rows}")
    ok = acknowledged == COUNT and found == COUNT and rows == (COUNT, COUNT)
    print("result:", "all stored exactly once" if ok else "LOST OR DUPLICATED DELIVERIES")
    shutil.rmtree(data_dir)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
