"""Shared benchmark plumbing: a fresh database, a gunicorn server, a multi-process load client."""

from __future__ import annotations

import http.client
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The project's venv; a worktree without one uses the interpreter running the benchmark.
VENV_BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin").is_dir() else Path(sys.executable).parent
#: Override both when several people bench on one machine at once (each run drops its database).
BENCH_DB = os.environ.get("LOYALTY_BENCH_DB", "loyalty_bench")
BENCH_REDIS_DB = int(os.environ.get("LOYALTY_BENCH_REDIS_DB", "12"))  # and the next one (RQ)
BENCH_DB_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{BENCH_DB}"
BENCH_REDIS_URL = f"redis://127.0.0.1:6379/{BENCH_REDIS_DB}"

Request = tuple[str, str, bytes, dict[str, str]]  # method, path, body, headers


def bench_environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LOYALTY_ENV="development",
        LOYALTY_DATABASE_URL=database_url(BENCH_DB),
        LOYALTY_REDIS_URL=BENCH_REDIS_URL,
        LOYALTY_JOBS_MODE="rq",
        LOYALTY_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def database_url(name: str) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def fresh_database(env: dict[str, str], name: str = BENCH_DB) -> None:
    """Drop and recreate a bench database (``env`` must point at it), then migrate it."""
    import psycopg

    assert env["LOYALTY_DATABASE_URL"] == database_url(name), "the environment points at another database"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([str(VENV_BIN / "alembic"), "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True)


def flush_redis() -> None:
    import redis

    for db_number in (BENCH_REDIS_DB, BENCH_REDIS_DB + 1):
        redis.Redis(db=db_number).flushdb()


@contextmanager
def gunicorn(app_spec: str, env: dict[str, str], port: int, workers: int = 2, threads: int = 4) -> Iterator[int]:
    """Serve ``app_spec`` with gunicorn's threaded workers (keep-alive) until the block exits; the
    block gets the master's pid (its children are the workers)."""
    command = [
        str(VENV_BIN / "gunicorn"),
        app_spec,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        _wait_until_serving(port)
        yield process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def _wait_until_serving(port: int, timeout: float = 120) -> None:
    # 120 s: on the shared VM at a load average of 20-30, importing the app alone took 45 s.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not come up on port {port}")


PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def pgbouncer(
    dbname: str, server_connections: int, *, host: str = "127.0.0.1", port: int = 5432, user: str = "postgres"
) -> Iterator[int]:
    """Debian's PgBouncer in transaction pooling in front of ``dbname`` (same name behind it), with
    ``server_connections`` server connections, on a free port: yields the port (docs/scaling.md)."""
    if PGBOUNCER is None:
        raise RuntimeError("pgbouncer is not installed: apt-get install -y pgbouncer")
    listen_port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    folder.chmod(0o755)  # PgBouncer drops root for the postgres user, which must read the file
    config = folder / "pgbouncer.ini"
    config.write_text(
        f"[databases]\n{dbname} = host={host} port={port} dbname={dbname} user={user}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {listen_port}\nauth_type = any\n"
        f"pool_mode = transaction\ndefault_pool_size = {server_connections}\nmax_client_conn = 1000\n"
    )
    config.chmod(0o644)
    command = [PGBOUNCER, *(["-u", "postgres"] if os.geteuid() == 0 else []), str(config)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", listen_port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start: {process.stderr.read().decode()[-500:]}") from None
                time.sleep(0.05)
        yield listen_port
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class LoadResult:
    label: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]

    def line(self) -> str:
        return (
            f"{self.label:<28} {self.rate:9.1f} req/s   p50 {statistics.median(self.latencies_ms):6.2f} ms"
            f"   p99 {self.percentile(99):6.2f} ms   statuses {self.statuses}"
        )


def _client(port: int, requests: list[Request], queue: multiprocessing.Queue) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, statuses = [], {}
    for method, path, body, headers in requests:
        started = time.perf_counter()
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        statuses[response.status] = statuses.get(response.status, 0) + 1
    queue.put((latencies, statuses))


def run_load(label: str, port: int, requests: list[Request], concurrency: int) -> LoadResult:
    """Send ``requests`` over ``concurrency`` keep-alive connections, as fast as the server answers."""
    chunks = [requests[i::concurrency] for i in range(concurrency)]
    queue: multiprocessing.Queue = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=_client, args=(port, chunk, queue)) for chunk in chunks]
    started = time.perf_counter()
    for process in processes:
        process.start()
    results = [queue.get() for _ in processes]
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join()
    latencies = [value for chunk, _ in results for value in chunk]
    statuses: dict[int, int] = {}
    for _, chunk_statuses in results:
        for status, n in chunk_statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    return LoadResult(label, len(requests), elapsed, latencies, statuses)


def combined(label: str, parts: list[LoadResult]) -> LoadResult:
    statuses: dict[int, int] = {}
    for part in parts:
        for status, n in part.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    return LoadResult(
        label,
        sum(part.requests for part in parts),
        sum(part.seconds for part in parts),
        [value for part in parts for value in part.latencies_ms],
        statuses,
    )


def run_interleaved(
    labels: tuple[str, str], port: int, floor: list[Request], ours: list[Request], concurrency: int, rounds: int
) -> tuple[LoadResult, LoadResult, list[float]]:
    """Floor and ours in alternating rounds (floor, ours, floor, ours…), so that the VM's speed,
    which drifts by tens of percent over a minute here, weighs on both alike. Returns both totals
    and each round's ratio (ours / floor)."""
    floor_parts, our_parts, ratios = [], [], []
    for round_number in range(rounds):
        floor_parts.append(run_load(labels[0], port, floor[round_number::rounds], concurrency))
        our_parts.append(run_load(labels[1], port, ours[round_number::rounds], concurrency))
        ratios.append(our_parts[-1].rate / floor_parts[-1].rate)
    return combined(labels[0], floor_parts), combined(labels[1], our_parts), ratios


def report(lines: list[str], ratio_label: str, ratio: float, target: str = "", rounds: Sequence[float] = ()) -> None:
    """The result lines and the ratio (and, from ``run_interleaved``, each round's ratio)."""
    print()
    for line in lines:
        print(line)
    print(f"{ratio_label}: {ratio:.2f}{'   (target ' + target + ')' if target else ''}")
    if rounds:
        print(f"per round ({len(rounds)} alternating rounds): " + " ".join(f"{r:.2f}" for r in rounds))
    sys.stdout.flush()


def warm(port: int, make: Callable[[int], Request], n: int = 50) -> None:
    run_load("warm-up", port, [make(i) for i in range(n)], 2)


def _paced_client(
    port: int, requests: list[Request], interval: float, start_at: float, queue: multiprocessing.Queue
) -> None:
    """Send one request every ``interval`` seconds from ``start_at`` (open loop: no waiting on replies
    to decide when to send; latency is measured from the scheduled send time)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, statuses = [], {}
    for index, (method, path, body, headers) in enumerate(requests):
        scheduled = start_at + index * interval
        delay = scheduled - time.time()
        if delay > 0:
            time.sleep(delay)
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append((time.time() - scheduled) * 1000)
        statuses[response.status] = statuses.get(response.status, 0) + 1
    queue.put((latencies, statuses))


def run_paced(label: str, port: int, requests: list[Request], rate: float, clients: int = 8) -> LoadResult:
    """Offer ``rate`` requests/s spread over ``clients`` connections; report latency percentiles."""
    chunks = [requests[i::clients] for i in range(clients)]
    interval = clients / rate
    start_at = time.time() + 1.0
    queue: multiprocessing.Queue = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(
            target=_paced_client, args=(port, chunk, interval, start_at + i * interval / clients, queue)
        )
        for i, chunk in enumerate(chunks)
    ]
    for process in processes:
        process.start()
    results = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    elapsed = max(len(chunk) for chunk in chunks) * interval
    latencies = [value for chunk, _ in results for value in chunk]
    statuses: dict[int, int] = {}
    for _, chunk_statuses in results:
        for status, n in chunk_statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    return LoadResult(label, len(requests), elapsed, latencies, statuses)
