"""Where a mall redemption's time goes beyond the ledger's own spend: cProfile in-process through the
Flask test client against a PostgreSQL bench database (no gunicorn, no HTTP), the CPU µs per
operation of this process and of its PostgreSQL backend, and the round trips each makes — for
``POST /api/v1/me/redemptions`` and for the floor of ``bench/mall.py`` (``ledger.spend`` + commit),
alternated in rounds.

    .venv/bin/python bench/mall_profile.py [--requests 1000] [--members 50] [--rounds 2] [--top 30] [--cpu]

CPU time (``time.process_time`` and the backend's utime + stime from /proc) leaves out the waits
for PostgreSQL and for other processes, so it holds still on a busy machine where wall time does not.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import itertools
import json
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_environment, flush_redis, fresh_database
from bench.mall import PRICE, members_with_tokens
from bench.miniapp import postgres_cpu


def _counted(counts: dict[str, int], key: str, *_args: object, **_kwargs: object) -> None:
    counts[key] += 1


def _measured(call: Callable[[int], None], requests: int) -> tuple[float, float, float]:
    """µs per call: wall, this process's CPU, its PostgreSQL backends' CPU."""
    started, cpu_started, pg_started = time.perf_counter(), time.process_time(), postgres_cpu()
    for i in range(requests):
        call(i)
    return (
        (time.perf_counter() - started) / requests * 1e6,
        (time.process_time() - cpu_started) / requests * 1e6,
        (postgres_cpu() - pg_started) / requests * 1e6,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="per round and operation")
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="cumulative", help="pstats order: cumulative, tottime …")
    parser.add_argument("--cpu", action="store_true", help="profile CPU time (time.process_time), not wall time")
    parser.add_argument("--reuse", help="members and tokens kept in this file: seed once, reuse the database after")
    parser.add_argument("--dump", help="also write the profile's stats to this file (pstats)")
    parser.add_argument("--profile", choices=("redeem", "spend", "none"), default="redeem")
    args = parser.parse_args()

    env = bench_environment()
    if args.reuse and Path(args.reuse).exists():  # the bench database as a previous run seeded it
        members = [tuple(row) for row in json.loads(Path(args.reuse).read_text())]
    else:
        fresh_database(env)
        flush_redis()
        members = members_with_tokens(env, args.members)
        if args.reuse:
            Path(args.reuse).write_text(json.dumps(members))
    os.environ.update(env)
    import sqlalchemy as sa

    from app import create_app
    from app.core.db import db
    from app.points import ledger

    app = create_app()
    import redis

    limits = redis.Redis.from_url(env["LOYALTY_REDIS_URL"])  # the rate limiter's counters live here
    client = app.test_client()
    # round trips through SQLAlchemy (the driver's own statements are not seen here)
    events = {"statements": "before_cursor_execute", "begin": "begin", "commit": "commit", "rollback": "rollback"}
    counts = dict.fromkeys(events, 0)
    with app.app_context():
        for key, event_name in events.items():
            sa.event.listen(db.engine, event_name, functools.partial(_counted, counts, key))
    serial = itertools.count()
    run = f"{time.time_ns() % 10**12:x}"  # request ids unique across runs on a reused database

    def redeem(i: int) -> None:
        if i % (len(members) * 20) == 0:  # 30 a minute per member: start the windows again
            limits.flushdb()
        _member_id, token = members[i % len(members)]
        answer = client.post(
            "/api/v1/me/redemptions",
            json={"item": "bench_coupon", "quantity": 1, "request_id": f"prof-{run}-{next(serial):08d}"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 201, answer.json

    context = app.app_context()
    context.push()

    def spend(i: int) -> None:
        member_id, _token = members[i % len(members)]
        ledger.spend(member_id, PRICE, idempotency_key=f"prof-floor:{run}:{next(serial)}", source_type="bench")
        db.session.commit()

    calls = {"ledger.spend + commit (floor)": spend, "POST /api/v1/me/redemptions": redeem}
    for call in calls.values():
        for i in range(200):  # warm: caches, pool, compiled statements, the tunables snapshot
            call(i)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in calls}
    trips: dict[str, dict[str, float]] = {}
    for _round in range(args.rounds):
        for name, call in calls.items():
            counts.update(dict.fromkeys(counts, 0))
            results[name].append(_measured(call, args.requests))
            trips[name] = {key: value / args.requests for key, value in counts.items()}
    for name, rows in results.items():
        shown = ", ".join(f"{c:.0f}+{p:.0f}" for _w, c, p in rows)
        best = min(c + p for _w, c, p in rows)
        print(f"== {name}: CPU µs per op (process + PostgreSQL backend), rounds: {shown}; best {best:.0f}")
        print(f"   wall µs {', '.join(f'{w:.0f}' for w, _c, _p in rows)}; per op {trips[name]}")
    floor = min(c + p for _w, c, p in results["ledger.spend + commit (floor)"])
    ours = min(c + p for _w, c, p in results["POST /api/v1/me/redemptions"])
    print(f"== CPU ratio floor/ours (≈ throughput ratio on saturated cores): {floor / ours:.2f}")
    if args.profile != "none":
        call = calls["POST /api/v1/me/redemptions" if args.profile == "redeem" else "ledger.spend + commit (floor)"]
        profiler = cProfile.Profile(time.process_time) if args.cpu else cProfile.Profile()
        profiler.enable()
        for i in range(args.requests):
            call(i)
        profiler.disable()
        if args.dump:
            profiler.dump_stats(args.dump)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
        print("\n".join(out.getvalue().splitlines()[: 12 + args.top]))
    context.pop()
    flush_redis()


if __name__ == "__main__":
    main()
