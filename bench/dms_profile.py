"""Where a DMS event's time goes beyond the bare endpoint: cProfile in-process through the Flask test
client against a PostgreSQL bench database (no gunicorn, no HTTP), CPU µs per request of this process
and of its PostgreSQL backends, like ``bench/miniapp_profile.py`` does for the balance read.

    .venv/bin/python bench/dms_profile.py [--requests 3000] [--top 25] [--cpu] [--sort tottime]

Each event is a fresh signed ``vehicle.delivered`` (stored, 202); the floor is ``/bench/bare``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_environment, flush_redis
from bench.dms_intake import DMS_SECRET, seeded_database, signed_event
from bench.miniapp_profile import profiled, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="cumulative", help="pstats order: cumulative, tottime …")
    parser.add_argument("--cpu", action="store_true", help="profile CPU time (time.process_time), not wall time")
    parser.add_argument("--rounds", type=int, default=1, help="measure floor and ours this many times, alternating")
    parser.add_argument("--no-seed", action="store_true", help="reuse the bench database as it is")
    parser.add_argument("--start", type=int, default=0, help="first event number (--no-seed: past the last run)")
    args = parser.parse_args()

    env = bench_environment(LOYALTY_DMS_SECRET=DMS_SECRET)
    if not args.no_seed:
        seeded_database(env)
    os.environ.update(env)
    from bench.dms_app import app

    client = app.test_client()
    total = 200 + args.requests * (args.rounds + 1)
    events = [signed_event(args.start + i) for i in range(total)]
    position = 0

    def ours(_i: int):
        nonlocal position
        _, path, body, headers = events[position]
        position += 1
        return client.post(path, data=body, headers=headers)

    def bare(i: int):
        _, _, body, headers = events[i % len(events)]
        return client.post("/bench/bare", data=body, headers=headers)

    for i in range(200):  # warm: caches, pool, compiled statements, the dealer codes
        assert bare(i).status_code == 202
        response = ours(i)
        assert response.status_code == 202, response.get_data(as_text=True)
    calls = (("bare endpoint", bare), ("POST /api/v1/dms/events", ours))
    for _round in range(args.rounds):
        for name, call in calls:
            plain, cpu, pg_cpu = timed(call, args.requests)
            print(
                f"== {name}: {plain:.0f} µs per request, {cpu:.0f} µs of this process's CPU and {pg_cpu:.0f} µs "
                "of its PostgreSQL backends' (no profiler)",
                flush=True,
            )
    if args.top:
        print(profiled(ours, args.requests, cpu=args.cpu, sort=args.sort, top=args.top))
    flush_redis()


if __name__ == "__main__":
    main()
