"""DMS intake throughput: signed events/s through POST /api/v1/dms/events vs a bare endpoint that
only reads the body (same gunicorn app, same client, same run, in alternating rounds), and p99
latency at a steady rate.

The intake path verifies the HMAC signature, validates the event, checks the dealer code, writes
the encrypted inbox row on PostgreSQL and nudges the drain through Redis (no worker runs, so
processing is excluded).

    .venv/bin/python bench/dms_intake.py [--events 6000] [--concurrency 8] [--rounds 6]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.security import sign_timestamped
from app.sync.samples import sample_delivery
from bench.common import (
    BENCH_DB,
    ROOT,
    VENV_BIN,
    bench_environment,
    flush_redis,
    fresh_database,
    gunicorn,
    report,
    run_interleaved,
    run_load,
    run_paced,
)

DMS_SECRET = "bench-dms-secret"


def signed_event(i: int) -> tuple[str, str, bytes, dict[str, str]]:
    body = json.dumps(
        sample_delivery(phone=f"137{i:08d}", event_id=f"bench-{i}", vin_suffix=f"B{i:07d}"),
        ensure_ascii=False,
    ).encode()
    headers = {"Content-Type": "application/json", **sign_timestamped(DMS_SECRET, body)}
    return "POST", "/api/v1/dms/events", body, headers


def commit_latency_ms(samples: int = 50) -> float:
    """Median time of a one-row autocommitted INSERT on the bench database: mostly the WAL flush
    (fdatasync) that every stored event waits for, which other loads on this machine stretch."""
    import statistics
    import time

    import psycopg

    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={BENCH_DB}", autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit_probe (id serial PRIMARY KEY)")
        timings = []
        for _ in range(samples):
            started = time.perf_counter()
            conn.execute("INSERT INTO bench_commit_probe DEFAULT VALUES")
            timings.append((time.perf_counter() - started) * 1000)
        conn.execute("DROP TABLE bench_commit_probe")
    return statistics.median(timings)


def seeded_database(env: dict[str, str]) -> None:
    """A fresh bench database with the demo dealers (the events name one), and empty Redis."""
    fresh_database(env)
    flush_redis()
    subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "demo", "seed"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6, help="Alternating floor/ours rounds")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="Length of the steady-rate run")
    parser.add_argument("--port", type=int, default=5801)
    args = parser.parse_args()

    env = bench_environment(LOYALTY_DMS_SECRET=DMS_SECRET)
    seeded_database(env)

    steady = int(args.rate * args.seconds)
    events = [signed_event(i) for i in range(200 + args.events + steady)]
    warmup, measured, paced = events[:200], events[200 : 200 + args.events], events[200 + args.events :]
    bare = [("POST", "/bench/bare", body, headers) for _, _, body, headers in measured]

    with gunicorn("bench.dms_app:app", env, args.port):
        run_load("warm-up", args.port, warmup + bare[:200], args.concurrency)
        labels = ("bare endpoint (floor)", "DMS intake")
        commit_before = commit_latency_ms()
        floor, ours, ratios = run_interleaved(labels, args.port, bare, measured, args.concurrency, args.rounds)
        commit_after = commit_latency_ms()
        steady_run = run_paced(f"DMS intake at {args.rate:.0f}/s", args.port, paced, args.rate)

    assert set(ours.statuses) == {202}, f"unexpected statuses {ours.statuses}"
    assert set(steady_run.statuses) == {202}, f"unexpected statuses {steady_run.statuses}"
    report(
        [floor.line(), ours.line(), steady_run.line()],
        "DMS intake / bare endpoint throughput ratio",
        ours.rate / floor.rate,
        target=">= 0.5",
        rounds=ratios,
    )
    print(f"p99 under full load: {ours.percentile(99):.1f} ms (floor {floor.percentile(99):.1f} ms)")
    print(
        f"p99 at a steady {args.rate:.0f} events/s: {steady_run.percentile(99):.1f} ms "
        f"(p50 {steady_run.percentile(50):.1f} ms)"
    )
    print(f"one-row autocommit INSERT (WAL flush) median: {commit_before:.1f} ms before, {commit_after:.1f} ms after")
    flush_redis()


if __name__ == "__main__":
    main()
