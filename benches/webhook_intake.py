#!/usr/bin/env python3
"""Webhook intake benchmark: 2,000 signed deliveries at 200 per second to `serve` on loopback.

Sends a real `issue_comment` payload (tests/fixtures) with a valid signature and a fresh
X-GitHub-Delivery each time, paced at RATE per second from a few sender threads, and records
how long each acknowledgement took. Then it kills the server with SIGKILL right after the last
acknowledgement, restarts it on the same DATA_DIR, and checks through GET /api/deliveries/{id}
that every delivery is still there, exactly once.

    cargo build --release && benches/webhook_intake.py        # COUNT=2000 RATE=200

DATABASE=postgres runs it on PostgreSQL instead of SQLite: the script makes its own server
(initdb and pg_ctl from Debian's `postgresql` package, as the `postgres` user when run as
root, on a free loopback port, in a temporary directory), durable as in production (fsync
and synchronous_commit on), and gives each replica what a replica needs: DATABASE_URL, a
signing key made with `keygen`, an App id and RSA key made with openssl, WEBHOOK_SECRET, and
a bucket. With App credentials each replica's worker runs beside intake; GITHUB_API_URL and
the bucket's R2_ENDPOINT point at a closed loopback port, so the leader's inbox waits on
GitHub requests it retries, and the deliveries are still pending at the kill (the output
counts them by state). REPLICAS=2 starts two
replicas on the same database and sends the deliveries to them in turn; after the last
acknowledgement both are killed with SIGKILL and restarted. The stored rows are counted
with psql. It also prints the CPU time PostgreSQL, the replicas, the load generator and the
rest of the machine used while the deliveries were sent, and PostgreSQL's WAL flushes.

    DATABASE=postgres benches/webhook_intake.py                        # 1 replica, 200/s
    DATABASE=postgres REPLICAS=2 RATE=400 benches/webhook_intake.py    # 2 replicas, 400/s

PG_SETTINGS (e.g. "synchronous_commit=off"), for diagnosis only, adds PostgreSQL settings;
the output names them.

Bounded: it sends COUNT requests at most, gives up after DEADLINE seconds, talks only to
127.0.0.1, and stops the servers it started and removes their directories, also on failure
or SIGINT/SIGTERM.
"""

import collections
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
DATABASE = os.environ.get("DATABASE", "sqlite")
REPLICAS = int(os.environ.get("REPLICAS", "1"))
PG_SETTINGS = os.environ.get("PG_SETTINGS", "").split()
SENDERS = 8
DEADLINE = COUNT / RATE * 3 + 30
SECRET = "benchmark secret"
SLOW_MS = 25
# Everything the whole run may take, start-up and checks included; past it the script stops.
BUDGET_SECONDS = int(DEADLINE * 2 + 180)
# Replica settings taken from the caller's environment would change what is measured.
NOT_INHERITED = ("APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "DATABASE_URL", "GPG_PRIVATE_KEY",
                 "SIGNING_KEY_PATH", "VERITY_SIGNING_KEY", "VERITY_SIGNING_KEY_PATH",
                 "STATUS_TOKEN", "STATUS_PUBLIC", "PUBLIC_URL", "CONFIG_FILE",
                 "TRUSTED_PROXY_HEADER", "GITHUB_URL", "S3_REGION", "S3_FORCE_PATH_STYLE")


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


def send_all(ports, body, signature, ids):
    """Sends delivery i to ports[i % len(ports)] at i / RATE seconds. Returns, per delivery,
    how long its acknowledgement took, its status, and how late it was sent; and the time
    all took."""
    latencies = [None] * COUNT
    statuses = [None] * COUNT
    lags = [None] * COUNT
    started = time.monotonic()
    next_index = iter(range(COUNT))
    lock = threading.Lock()

    def connect(port):
        return http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def sender():
        connections = {}
        while True:
            with lock:
                index = next(next_index, None)
            if index is None or time.monotonic() - started > DEADLINE:
                break
            port = ports[index % len(ports)]
            connection = connections.get(port) or connections.setdefault(port, connect(port))
            # Pace: delivery i is due at i / RATE seconds after the start.
            delay = started + index / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            headers = {"X-GitHub-Delivery": ids[index], "X-GitHub-Event": "issue_comment",
                       "X-Hub-Signature-256": signature, "Content-Type": "application/json"}
            sent = time.monotonic()
            lags[index] = max(0.0, sent - (started + index / RATE))
            try:
                connection.request("POST", "/api/github/webhooks", body, headers)
                response = connection.getresponse()
                response.read()
                statuses[index] = response.status
            except OSError as error:
                statuses[index] = f"error: {error}"
                connection.close()
                connections[port] = connect(port)
            latencies[index] = time.monotonic() - sent
        for connection in connections.values():
            connection.close()

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses, lags, time.monotonic() - started


def percentiles(latencies):
    measured = sorted(l for l in latencies if l is not None)

    def percentile(p):
        return measured[min(len(measured) - 1, int(len(measured) * p))] * 1000

    return (f"p50 {percentile(0.50):.2f}, p90 {percentile(0.90):.2f}, "
            f"p99 {percentile(0.99):.2f}, max {measured[-1] * 1000:.2f}")


def acknowledged(statuses):
    return sum(1 for s in statuses if isinstance(s, int) and 200 <= s < 300)


def run_sqlite():
    body = PAYLOAD.read_bytes()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    data_dir = tempfile.mkdtemp(prefix="webhook-bench-")
    server = None
    try:
        port = free_port()
        server = start(data_dir, port)
        ids = [f"b0000000-0000-4000-8000-{i:012d}" for i in range(COUNT)]
        latencies, statuses, _, elapsed = send_all([port], body, signature, ids)
        server.send_signal(signal.SIGKILL)
        server.wait()

        server = start(data_dir, port)
        found = 0
        for delivery in ids:
            status, text = get(port, f"/api/deliveries/{delivery}")
            if status == 200 and json.loads(text)["event"] == "issue_comment":
                found += 1
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        server = None
        database = sqlite3.connect(pathlib.Path(data_dir) / "alloy-sysext.db")
        rows = database.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM deliveries").fetchone()
        database.close()

        print(f"deliveries: {COUNT} at {RATE:.0f}/s over {elapsed:.1f} s, {SENDERS} connections")
        print(f"acknowledged with 2xx: {acknowledged(statuses)}/{COUNT}")
        print(f"ack latency ms: {percentiles(latencies)}")
        print(f"after kill -9 and restart: {found}/{COUNT} found; (rows, distinct ids) = {rows}")
        ok = acknowledged(statuses) == COUNT and found == COUNT and rows == (COUNT, COUNT)
        print("result:", "all stored exactly once" if ok else "LOST OR DUPLICATED DELIVERIES")
        return ok
    finally:
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


class Postgres:
    """A throwaway PostgreSQL server in `root`, durable as in production."""

    def __init__(self, root):
        self.bin = postgres_binaries()
        self.root = root / "postgres"
        self.data = self.root / "data"
        self.as_postgres = os.geteuid() == 0
        self.port = None
        self.root.mkdir()
        if self.as_postgres:
            # The postgres user passes through `root` (mkdtemp makes it the owner's only).
            root.chmod(0o711)
            subprocess.run(["chown", "postgres:postgres", str(self.root)], check=True)
        self.run("initdb", "--auth=trust", "--username=postgres", "--encoding=UTF8",
                 "--locale=C", "--no-instructions", "-D", str(self.data))
        settings = ["listen_addresses=127.0.0.1", f"unix_socket_directories={self.root}",
                    # Counts the time spent writing and flushing WAL (pg_stat_wal); changes
                    # nothing of what is written or when.
                    "track_wal_io_timing=on"] + PG_SETTINGS
        # The port is free when asked, but another process may take it first: try a few.
        for _ in range(5):
            port = free_port()
            options = " ".join([f"-p {port}"] + [f"-c {s}" for s in settings])
            if self.run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data),
                        "-l", str(self.root / "server.log"), "-o", options, check=False):
                self.port = port
                return
        log = (self.root / "server.log").read_text(errors="replace")
        sys.exit(f"PostgreSQL did not start; its log:\n{log}")

    def run(self, program, *args, check=True):
        command = [str(self.bin / program), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--"] + command
        done = subprocess.run(command, cwd=self.root, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, timeout=120)
        if check and done.returncode != 0:
            sys.exit(f"{program} {' '.join(args)} failed")
        return done.returncode == 0

    def url(self, database):
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def query(self, sql, database="postgres"):
        """The rows `sql` gives, one list of columns per row."""
        done = subprocess.run([str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v",
                               "ON_ERROR_STOP=1", "-d", self.url(database), "-c", sql],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            sys.exit(f"{sql} failed: {done.stderr}")
        return [line.split("|") for line in done.stdout.splitlines() if line]

    def postmaster(self):
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self):
        if self.port is not None and not self.run("pg_ctl", "stop", "-m", "fast", "-w", "-t", "30",
                                                  "-D", str(self.data), check=False):
            self.run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.data), check=False)


def postgres_binaries():
    """The newest PostgreSQL that Debian's package installed."""
    versions = [p for p in pathlib.Path("/usr/lib/postgresql").glob("*/bin/initdb")
                if p.parent.parent.name.isdigit()]
    if not versions:
        sys.exit("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                 "`apt-get install postgresql`")
    return max(versions, key=lambda p: int(p.parent.parent.name)).parent


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_times(pid):
    """(parent pid, own CPU seconds, CPU seconds of reaped children) from /proc/<pid>/stat."""
    text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return int(fields[1]), (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS


def postgres_cpu(postmaster):
    """CPU seconds used by PostgreSQL so far: the postmaster, its children alive now, and the
    children it reaped (backends of closed connections)."""
    _, own, reaped = process_times(postmaster)
    total = own + reaped
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent, child_own, _ = process_times(entry.name)
            except (OSError, ValueError):
                continue
            if parent == postmaster:
                total += child_own
    return total


def machine_cpu():
    """(busy, iowait) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(f) for f in pathlib.Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS, iowait / CLOCK_TICKS


class Cpu:
    """CPU time of each party while the deliveries are sent."""

    def __init__(self, postmaster, replicas):
        self.postmaster = postmaster
        self.replicas = replicas

    def sample(self):
        times = os.times()
        return {"postgres": postgres_cpu(self.postmaster),
                "replicas": [process_times(r.pid)[1] for r in self.replicas],
                "load generator": times.user + times.system,
                "machine": machine_cpu()}

    @staticmethod
    def report(before, after, elapsed):
        postgres = after["postgres"] - before["postgres"]
        replicas = [a - b for a, b in zip(after["replicas"], before["replicas"])]
        generator = after["load generator"] - before["load generator"]
        busy = after["machine"][0] - before["machine"][0]
        iowait = after["machine"][1] - before["machine"][1]
        rest = busy - postgres - sum(replicas) - generator
        cores = os.cpu_count()
        shown = " + ".join(f"{r:.2f}" for r in replicas)
        print(f"CPU seconds while sending ({elapsed:.1f} s x {cores} cores = "
              f"{elapsed * cores:.1f}): postgres {postgres:.2f}, replicas {shown}, "
              f"load generator {generator:.2f}, rest of the machine {max(rest, 0):.2f}; "
              f"machine busy {busy / (elapsed * cores) * 100:.0f}%, iowait {iowait:.2f}")


def slow_seconds(latencies):
    """Deliveries slower than SLOW_MS, and the seconds of the run that had the most of them."""
    slow = collections.Counter(int(i / RATE) for i, l in enumerate(latencies)
                               if l is not None and l * 1000 > SLOW_MS)
    worst = ", ".join(f"s{second}: {n}" for second, n in sorted(slow.most_common(5)))
    return sum(slow.values()), worst


def replica_environment(root, postgres, number, closed_port):
    """What replica `number` is started with: its own DATA_DIR, the rest shared."""
    env = {name: value for name, value in os.environ.items() if name not in NOT_INHERITED}
    env.update(DATA_DIR=str(root / f"replica-{number}"), WEBHOOK_SECRET=SECRET,
               LOG_LEVEL="warn", LOG_FORMAT="json", DATABASE_URL=postgres.url("alloy_sysext"),
               SIGNING_KEY_PATH=str(root / "keys" / "signing-key.asc"), APP_ID="1",
               PRIVATE_KEY_PATH=str(root / "app-key.pem"),
               GITHUB_API_URL=f"http://127.0.0.1:{closed_port}",
               R2_ENDPOINT=f"http://127.0.0.1:{closed_port}", R2_BUCKET="images",
               R2_ACCESS_KEY_ID="benchmark", R2_SECRET_ACCESS_KEY="benchmark")
    return env


def start_replica(env, port, log):
    env = dict(env, PORT=str(port))
    with open(log, "ab") as output:
        replica = subprocess.Popen([str(BINARY), "serve"], env=env, stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT)
    until = time.monotonic() + 30
    while time.monotonic() < until and replica.poll() is None:
        try:
            get(port, "/healthz")
            return replica
        except OSError:
            time.sleep(0.05)
    replica.kill()
    replica.wait()
    tail = pathlib.Path(log).read_text(errors="replace")[-3000:]
    sys.exit(f"the replica on port {port} did not start; its output:\n{tail}")


def log_summary(logs):
    """The warnings and errors the replicas logged, most frequent first."""
    messages = collections.Counter()
    for log in logs:
        for line in pathlib.Path(log).read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                messages[line[:80]] += 1
                continue
            messages[f"{entry.get('level')} {entry.get('fields', {}).get('message', '')[:80]}"] += 1
    return "; ".join(f"{n}x {m}" for m, n in messages.most_common(4)) or "none"


def run_postgres():
    body = PAYLOAD.read_bytes()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    root = pathlib.Path(tempfile.mkdtemp(prefix="webhook-bench-pg-"))
    postgres = None
    replicas = []
    try:
        postgres = Postgres(root)
        postgres.query("CREATE DATABASE alloy_sysext")
        subprocess.run([str(BINARY), "keygen", "--out", str(root / "keys"),
                        "--algorithm", "ed25519"], check=True, capture_output=True, timeout=60)
        subprocess.run(["openssl", "genrsa", "-out", str(root / "app-key.pem"), "2048"],
                       check=True, capture_output=True, timeout=60)
        closed_port = free_port()
        environments = [replica_environment(root, postgres, n, closed_port)
                        for n in range(1, REPLICAS + 1)]
        ports = [free_port() for _ in environments]
        logs = [root / f"replica-{n}.log" for n in range(1, REPLICAS + 1)]
        for env, port, log in zip(environments, ports, logs):
            replicas.append(start_replica(env, port, log))

        ids = [f"b0000000-0000-4000-8000-{i:012d}" for i in range(COUNT)]
        postgres.query("SELECT pg_stat_reset_shared('wal')")
        commits_before = int(postgres.query(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = 'alloy_sysext'")[0][0])
        cpu = Cpu(postgres.postmaster(), replicas)
        cpu_before = cpu.sample()
        latencies, statuses, lags, elapsed = send_all(ports, body, signature, ids)
        cpu_after = cpu.sample()
        for replica in replicas:
            replica.send_signal(signal.SIGKILL)
        for replica in replicas:
            replica.wait()
        replicas.clear()

        # pg_stat_database lags by up to PGSTAT's flush interval; the WAL counters do not
        # need to be exact to the commit.
        time.sleep(1)
        commits = int(postgres.query(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = 'alloy_sysext'")[0][0]) \
            - commits_before
        wal_syncs, wal_sync_ms, wal_writes = postgres.query(
            "SELECT wal_sync, wal_sync_time, wal_write FROM pg_stat_wal")[0]
        handled = postgres.query(
            "SELECT state, COUNT(*) FROM deliveries GROUP BY state ORDER BY state",
            "alloy_sysext")

        for env, port, log in zip(environments, ports, logs):
            replicas.append(start_replica(env, port, log))
        found = 0
        for index, delivery in enumerate(ids):
            status, text = get(ports[index % len(ports)], f"/api/deliveries/{delivery}")
            if status == 200 and json.loads(text)["event"] == "issue_comment":
                found += 1
        for replica in replicas:
            replica.send_signal(signal.SIGTERM)
        for replica in replicas:
            replica.wait(timeout=30)
        replicas.clear()
        rows = tuple(int(n) for n in postgres.query(
            "SELECT COUNT(*), COUNT(DISTINCT id) FROM deliveries", "alloy_sysext")[0])
        version = postgres.query("SHOW server_version")[0][0]
        durability = ", ".join(f"{name}={postgres.query(f'SHOW {name}')[0][0]}"
                               for name in ("fsync", "synchronous_commit", "full_page_writes"))

        extra = f"; added for diagnosis: {' '.join(PG_SETTINGS)}" if PG_SETTINGS else ""
        print(f"database: PostgreSQL {version} on loopback ({durability}{extra}); "
              f"{REPLICAS} replica(s), each with its worker running beside intake "
              f"(GitHub API and bucket at a closed loopback port)")
        spread = f" ({SENDERS} per replica), in turn to {REPLICAS} replicas" if REPLICAS > 1 else ""
        print(f"deliveries: {COUNT} at {RATE:.0f}/s over {elapsed:.1f} s, "
              f"{SENDERS * REPLICAS} connections{spread}")
        print(f"acknowledged with 2xx: {acknowledged(statuses)}/{COUNT}")
        print(f"ack latency ms: {percentiles(latencies)}")
        if REPLICAS > 1:
            for n in range(REPLICAS):
                print(f"  replica {n + 1}: {percentiles(latencies[n::REPLICAS])}")
        slow, worst = slow_seconds(latencies)
        print(f"slower than {SLOW_MS} ms: {slow}" + (f" (most in seconds {worst})" if slow else ""))
        print(f"sent behind schedule (the load generator's own delay) ms: "
              f"{percentiles(lags)}")
        Cpu.report(cpu_before, cpu_after, elapsed)
        syncs = int(wal_syncs)
        average = float(wal_sync_ms) / syncs if syncs else 0.0
        print(f"PostgreSQL while sending and up to the kill: {commits} commits, "
              f"{wal_writes} WAL writes, {syncs} WAL flushes of {average:.2f} ms on average")
        print("deliveries by state at the kill: "
              + ", ".join(f"{state} {n}" for state, n in handled))
        print(f"replica warnings and errors: {log_summary(logs)}")
        print(f"after kill -9 and restart: {found}/{COUNT} found; (rows, distinct ids) = {rows}")
        ok = acknowledged(statuses) == COUNT and found == COUNT and rows == (COUNT, COUNT)
        print("result:", "all stored exactly once" if ok else "LOST OR DUPLICATED DELIVERIES")
        return ok
    finally:
        for replica in replicas:
            replica.kill()
            replica.wait()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


def stop_on_signal(number, _frame):
    raise SystemExit(f"stopped by signal {number}")


def main():
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: run `cargo build --release` first")
    if DATABASE not in ("sqlite", "postgres"):
        sys.exit(f"DATABASE={DATABASE!r}: use sqlite (the default) or postgres")
    if REPLICAS not in (1, 2) or (DATABASE == "sqlite" and REPLICAS != 1):
        sys.exit(f"REPLICAS={REPLICAS}: use 1, or 2 with DATABASE=postgres")
    # The servers started here are stopped and their directories removed however the run
    # ends: on a signal, or when the whole run takes longer than it ever should.
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(number, stop_on_signal)
    signal.alarm(BUDGET_SECONDS)
    ok = run_postgres() if DATABASE == "postgres" else run_sqlite()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
