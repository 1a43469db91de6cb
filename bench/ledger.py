"""Ledger throughput and nightly expiry, each as a ratio against a floor on the same server.

1. award + spend: worker processes run the real ledger code (``ledger.earn`` then
   ``ledger.spend``, one transaction and commit each) against random members, for a fixed time.
   Floor: ``pgbench -b tpcb-like`` with the same client count against the same PostgreSQL.
   Target: ratio ≥ 0.5.
2. nightly expiry of 1,000,000 due lots (100,000 members × 10 lots) through
   ``expiry.expire_due`` (locks, one expire entry per member, balances) vs ONE raw
   ``UPDATE point_lots … WHERE expires_at <= now()`` over the same rows. Target: ≤ 2×.

    .venv/bin/python bench/ledger.py [--clients 8] [--seconds 20] [--lots 1000000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import bench_environment, fresh_database
from bench.seeding import PG, run_sql, seed_members

PGBENCH_DB = "loyalty_pgbench"
MEMBERS_FOR_THROUGHPUT = 10_000


# --- 1. award + spend vs pgbench ------------------------------------------------------------


def _ledger_worker(seconds: float, seed: int, queue: multiprocessing.Queue) -> None:
    os.environ.update(bench_environment())
    import sqlalchemy as sa

    from app import create_app
    from app.core.db import db
    from app.points import ledger
    from app.points.models import PointAccount

    app = create_app()
    rng = random.Random(seed)
    done = 0
    with app.app_context():
        member_ids = db.session.scalars(sa.select(PointAccount.member_id)).all()
        db.session.commit()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            member_id = rng.choice(member_ids)
            key = f"{seed}-{done}"
            ledger.earn(
                ledger.Earning(
                    member_id=member_id,
                    currency="reward",
                    points=100,
                    idempotency_key=f"award:{key}",
                    source_type="bench",
                )
            )
            db.session.commit()
            ledger.spend(member_id, 50, idempotency_key=f"spend:{key}", source_type="bench")
            db.session.commit()
            done += 2
    queue.put(done)


def ledger_tps(clients: int, seconds: float) -> float:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_ledger_worker, args=(seconds, i, queue)) for i in range(clients)]
    for worker in workers:
        worker.start()
    total = sum(queue.get() for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


def pgbench_tps(clients: int, seconds: int) -> float:
    with psycopg.connect(f"{PG} dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PGBENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PGBENCH_DB}"')
    base = ["-h", "127.0.0.1", "-U", "postgres"]
    subprocess.run(["pgbench", *base, "-i", "-s", "10", "-q", PGBENCH_DB], check=True, capture_output=True)
    result = subprocess.run(
        ["pgbench", *base, "-b", "tpcb-like", "-c", str(clients), "-j", "2", "-T", str(seconds), PGBENCH_DB],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(re.search(r"tps = ([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]


# --- 2. expiry vs raw UPDATE ----------------------------------------------------------------

RESET_LOTS = """
    UPDATE point_lots SET remaining = points, expired_points = 0, status = 'available', expired_by_entry_id = NULL;
    UPDATE point_accounts SET reward_available = lifetime_earned, lifetime_expired = 0;
"""


def raw_update_seconds() -> float:
    run_sql(RESET_LOTS + "VACUUM ANALYZE;")
    started = time.perf_counter()
    run_sql(
        "UPDATE point_lots SET expired_points = remaining, remaining = 0, status = 'expired' "
        "WHERE status = 'available' AND remaining > 0 AND expires_at <= now()"
    )
    return time.perf_counter() - started


def expiry_seconds() -> tuple[float, str]:
    run_sql(RESET_LOTS + "VACUUM ANALYZE;")
    os.environ.update(bench_environment())
    from app import create_app
    from app.core.db import db
    from app.points import expiry

    app = create_app()
    with app.app_context():
        started = time.perf_counter()
        run = expiry.expire_due(commit_each_chunk=True)
        db.session.commit()
        elapsed = time.perf_counter() - started
    return elapsed, f"{run.members} members, {run.lots} lots, {run.points} points, {run.chunks} chunks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--lots", type=int, default=1_000_000)
    parser.add_argument("--skip-expiry", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    env = bench_environment()

    if not args.skip_throughput:
        print(f"award + spend, {args.clients} clients, {args.seconds} s each ...", flush=True)
        fresh_database(env)
        seed_members(MEMBERS_FOR_THROUGHPUT, lots_each=1)
        ours = ledger_tps(args.clients, args.seconds)
        floor = pgbench_tps(args.clients, args.seconds)
        print(f"  ledger award+spend: {ours:8.1f} tx/s")
        print(f"  pgbench tpcb-like:  {floor:8.1f} tx/s")
        print(f"ledger / pgbench tpcb-like throughput ratio: {ours / floor:.2f}   (target >= 0.5)", flush=True)

    if args.skip_expiry:
        return
    members = args.lots // 10
    print(f"\nnightly expiry of {args.lots:,} due lots ({members:,} members x 10) ...", flush=True)
    fresh_database(env)
    seed_members(members, lots_each=10, due=True)
    floor_seconds = raw_update_seconds()
    our_seconds, summary = expiry_seconds()
    print(f"  raw UPDATE:         {floor_seconds:8.2f} s")
    print(f"  expiry batch:       {our_seconds:8.2f} s   ({summary})")
    print(f"expiry / raw UPDATE time ratio: {our_seconds / floor_seconds:.2f}   (target <= 2)")


if __name__ == "__main__":
    main()
