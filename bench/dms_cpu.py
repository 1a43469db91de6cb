"""Server CPU per request under gunicorn: the bare endpoint (floor) and DMS intake in alternating
rounds, as CPU time of the gunicorn workers and of the bench database's PostgreSQL backends (from
/proc) divided by the requests served. On a shared, loaded machine throughput swings with the
neighbours; the CPU a request costs moves much less, and on a saturated box throughput ≈ 1 / CPU.

    .venv/bin/python bench/dms_cpu.py [--requests 2000] [--rounds 3] [--start N] [--no-seed]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import BENCH_DB, bench_environment, cpu_seconds, gunicorn, run_load
from bench.dms_intake import DMS_SECRET, seeded_database, signed_event


def children_of(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def postgres_backends() -> list[int]:
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        return [row[0] for row in conn.execute(query, (BENCH_DB,))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--start", type=int, default=0, help="first event number (--no-seed: past the last run)")
    parser.add_argument("--no-seed", action="store_true", help="reuse the bench database as it is")
    parser.add_argument("--port", type=int, default=5801)
    args = parser.parse_args()

    env = bench_environment(LOYALTY_DMS_SECRET=DMS_SECRET)
    if not args.no_seed:
        seeded_database(env)
    n = args.requests
    events = [signed_event(args.start + i) for i in range(200 + n * args.rounds)]
    bare = [("POST", "/bench/bare", body, headers) for _, _, body, headers in events[:n]]
    floors, ours, ratios = [], [], []
    with gunicorn("bench.dms_app:app", env, args.port) as master:
        run_load("warm-up", args.port, events[:200] + bare[:200], args.concurrency)
        workers = children_of(master)
        for round_no in range(args.rounds):
            measured = {}
            sides = (("floor", bare), ("ours", events[200 + round_no * n : 200 + (round_no + 1) * n]))
            for name, requests in sides:
                backends = postgres_backends()
                before = {pid: cpu_seconds(pid) for pid in workers + backends}
                result = run_load(name, args.port, requests, args.concurrency)
                assert set(result.statuses) == {202}, result.statuses
                total = sum(cpu_seconds(pid) - before[pid] for pid in before) / n * 1e6
                in_postgres = sum(cpu_seconds(pid) - before[pid] for pid in backends) / n * 1e6
                measured[name] = total
                print(
                    f"  {name}: {total:.0f} µs CPU per request ({in_postgres:.0f} in PostgreSQL), {result.rate:.0f}/s"
                )
            floors.append(measured["floor"])
            ours.append(measured["ours"])
            ratios.append(measured["floor"] / measured["ours"])
            print(f"round {round_no + 1}: CPU ratio floor / ours {ratios[-1]:.2f}", flush=True)
    rounds = " ".join(f"{ratio:.2f}" for ratio in ratios)
    print(
        f"median CPU per request: floor {statistics.median(floors):.0f} µs, "
        f"DMS intake {statistics.median(ours):.0f} µs; ratio {statistics.median(ratios):.2f} (rounds {rounds})"
    )


if __name__ == "__main__":
    main()
