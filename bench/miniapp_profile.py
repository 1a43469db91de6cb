"""Where a balance read's time goes beyond ``/healthz``: cProfile in-process through the Flask test
client against a PostgreSQL bench database (no gunicorn, no HTTP), and the round trips to PostgreSQL
each request makes (statements, BEGIN and COMMIT, counted by SQLAlchemy's engine events).

    .venv/bin/python bench/miniapp_profile.py [--requests 3000] [--members 50] [--top 25]

The CPU time of this process per request (``time.process_time``) leaves out the time spent waiting
for PostgreSQL and for other processes, so it holds still on a busy machine where wall time does not.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_environment, flush_redis, fresh_database
from bench.miniapp import members_with_tokens, postgres_cpu


def timed(call: Callable[[int], object], requests: int) -> tuple[float, float, float]:
    """µs per call: wall time, this process's CPU, its PostgreSQL backends' CPU (no profiler)."""
    started, cpu_started, pg_started = time.perf_counter(), time.process_time(), postgres_cpu()
    for i in range(requests):
        call(i)
    plain = (time.perf_counter() - started) / requests * 1e6
    cpu = (time.process_time() - cpu_started) / requests * 1e6
    return plain, cpu, (postgres_cpu() - pg_started) / requests * 1e6


def profiled(call: Callable[[int], object], requests: int, *, cpu: bool, sort: str, top: int) -> str:
    """cProfile's report of ``requests`` calls (``cpu``: ``time.process_time``, else wall time)."""
    profiler = cProfile.Profile(time.process_time) if cpu else cProfile.Profile()
    profiler.enable()
    for i in range(requests):
        call(i)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(top)
    return "\n".join(out.getvalue().splitlines()[: 12 + top])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="cumulative", help="pstats order: cumulative, tottime …")
    parser.add_argument("--only-balance", action="store_true")
    parser.add_argument("--cpu", action="store_true", help="profile CPU time (time.process_time), not wall time")
    parser.add_argument("--no-seed", action="store_true", help="reuse the bench database as it is")
    args = parser.parse_args()

    env = bench_environment()
    if not args.no_seed:
        fresh_database(env)
        flush_redis()
    tokens = members_with_tokens(env, args.members)
    os.environ.update(env)
    import sqlalchemy as sa

    from app import create_app
    from app.core.db import db

    app = create_app()
    client = app.test_client()
    counts = {"statements": 0, "begin": 0, "commit": 0, "rollback": 0}

    def count(name: str):
        def listener(*_args, **_kwargs) -> None:
            counts[name] += 1

        return listener

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count("statements"))
    sa.event.listen(engine, "begin", count("begin"))
    sa.event.listen(engine, "commit", count("commit"))
    sa.event.listen(engine, "rollback", count("rollback"))

    def balance(i: int):
        return client.get("/api/v1/me/points", headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"})

    def health(_i: int):
        return client.get("/healthz")

    calls = (("/healthz", health), ("GET /api/v1/me/points", balance))
    for name, call in calls[1:] if args.only_balance else calls:
        for i in range(200):  # warm: caches, pool, compiled statements, the tunables snapshot
            assert call(i).status_code == 200
        for key in counts:
            counts[key] = 0
        plain, cpu, pg_cpu = timed(call, args.requests)
        per_request = {key: value / args.requests for key, value in counts.items()}
        profile = profiled(call, args.requests, cpu=args.cpu, sort=args.sort, top=args.top)
        print(
            f"== {name}: {plain:.0f} µs per request, {cpu:.0f} µs of this process's CPU and {pg_cpu:.0f} µs of "
            "its PostgreSQL backends' (no profiler); "
            f"per request {per_request}"
        )
        if args.top == 0:
            continue
        print(profile)
    flush_redis()


if __name__ == "__main__":
    main()
