"""Ledger throughput and nightly expiry, each as a ratio against a floor on the same server.

1. award + spend: worker processes run the real ledger code (``ledger.earn`` then
   ``ledger.spend``, one transaction and commit each) against random members, for a fixed time.
   Floor: ``pgbench -b tpcb-like`` with the same client count against the same PostgreSQL.
   Alternating rounds (ours, floor, ours, floor …): the VM's speed drifts within a minute.
   Target: ratio ≥ 0.5. Also, as a third side of each round, the ledger's own statements (earn,
   lock, spend, the CRM outbox row) through pgbench (``same_sql_script``): how much of the gap is
   the SQL a change must do, and how much is Python, SQLAlchemy and the app around it.
2. nightly expiry of 1,000,000 due lots (100,000 members × 10 lots) through
   ``expiry.expire_due`` (locks, one expire entry per member, balances) vs ONE raw
   ``UPDATE point_lots … WHERE expires_at <= now()`` over the same rows, alternating rounds on
   the same seeded rows (reset between). Target: ≤ 2×.

    .venv/bin/python bench/ledger.py [--clients 8] [--seconds 10] [--rounds 3] [--lots 1000000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import BENCH_DB, bench_environment, fresh_database
from bench.seeding import PG, run_sql, seed_members

PGBENCH_DB = "loyalty_pgbench"
MEMBERS_FOR_THROUGHPUT = 10_000


# --- 1. award + spend vs pgbench ------------------------------------------------------------


def award_and_spend(member_id: int, key: str) -> None:
    """One pair as the bench counts it: award 100 through ``ledger.earn`` and commit, then spend 50
    through ``ledger.spend`` and commit (an app context is open)."""
    from app.core.db import db
    from app.points import ledger

    ledger.earn(
        ledger.Earning(
            member_id=member_id, currency="reward", points=100, idempotency_key=f"award:{key}", source_type="bench"
        )
    )
    db.session.commit()
    ledger.spend(member_id, 50, idempotency_key=f"spend:{key}", source_type="bench")
    db.session.commit()


def _ledger_worker(seconds: float, seed: int, queue: multiprocessing.Queue) -> None:
    os.environ.update(bench_environment())
    import sqlalchemy as sa

    from app import create_app
    from app.core.db import db
    from app.points.models import PointAccount

    app = create_app()
    rng = random.Random(seed)
    done = 0
    with app.app_context():
        member_ids = db.session.scalars(sa.select(PointAccount.member_id)).all()
        db.session.commit()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            award_and_spend(rng.choice(member_ids), f"{seed}-{done}")
            done += 2
    queue.put(done)


def ledger_tps(clients: int, seconds: float, round_number: int = 0) -> float:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    seeds = [round_number * 1000 + i for i in range(clients)]  # fresh idempotency keys every round
    workers = [multiprocessing.Process(target=_ledger_worker, args=(seconds, seed, queue)) for seed in seeds]
    for worker in workers:
        worker.start()
    total = sum(queue.get() for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


_PGBENCH = ["-h", "127.0.0.1", "-U", "postgres"]


def pgbench_init() -> None:
    with psycopg.connect(f"{PG} dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PGBENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PGBENCH_DB}"')
    subprocess.run(["pgbench", *_PGBENCH, "-i", "-s", "10", "-q", PGBENCH_DB], check=True, capture_output=True)


def _pgbench_tps(*arguments: str, clients: int, seconds: int, database: str) -> float:
    """Run pgbench with ``arguments`` (a built-in or a script), ``clients`` clients on 2 threads for
    ``seconds``; its transactions per second."""
    result = subprocess.run(
        ["pgbench", *_PGBENCH, *arguments, "-c", str(clients), "-j", "2", "-T", str(seconds), database],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(re.search(r"tps = ([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]


def pgbench_tps(clients: int, seconds: int) -> float:
    return _pgbench_tps("-b", "tpcb-like", clients=clients, seconds=seconds, database=PGBENCH_DB)


def same_sql_script() -> str:
    """A pgbench script running the ledger's own statements for one award + spend pair, as our code
    sends them (``app/points/ledger/sql.py`` and the CRM outbox's one-row statement, each change's
    outbox row before its COMMIT): BEGIN, earn, outbox, COMMIT; BEGIN, lock, spend, outbox, COMMIT.
    The parameters our code binds become pgbench variables or SQL (``now()`` for the clock)."""
    from app.crm.outbox import _NUMBER_AND_INSERT_ONE
    from app.points.ledger import sql

    earn = {
        "member_id": ":member",
        "currency": "'reward'",
        "kind": "'earn'",
        "signed_points": "100",
        "points": "100",
        "idempotency_key": "'award:' || :client_id || ':' || :key",
        "source_type": "'bench'",
        "funder": "'oem'",
        "occurred_at": "now()",
        "now": "now()",
        "pays_debt": "true",
        "lot_status": "'available'",
        "available_at": "now()",
        "expires_at": "now() + interval '2 years'",
        "to_available": "100",
        "to_pending": "0",
        "to_tier": "0",
        "to_lifetime": "100",
    }
    spend = earn | {
        "kind": "'spend'",
        "signed_points": "-50",
        "points": "50",
        "idempotency_key": "'spend:' || :client_id || ':' || :key",
    }

    def spelled(statement: str, values: dict[str, str]) -> str:
        text = re.sub(r"%\((\w+)\)s", lambda m: values.get(m.group(1), "NULL"), statement)
        return " ".join(text.split()) + ";"  # pgbench reads one statement per line

    def outbox(kind: str) -> str:
        values = iter([":member", f"'{kind}'", "'{}'", "now()", "now()"])
        return " ".join(re.sub(r"%s", lambda _m: next(values), _NUMBER_AND_INSERT_ONE).split()) + ";"

    return "\n".join(
        [
            "\\set member random(1, :members)",
            "\\set key random(1, 1000000000000000)",
            "BEGIN;",
            spelled(sql._EARN, earn),
            outbox("balance"),
            "COMMIT;",
            "BEGIN;",
            spelled(sql._LOCK, spend),
            spelled(sql._SPEND, spend),
            outbox("balance"),
            "COMMIT;",
            "",
        ]
    )


def same_sql_tps(clients: int, seconds: int, members: int, database: str) -> float:
    """Transactions/s (2 per script run) of ``same_sql_script`` through pgbench, prepared statements
    like psycopg's after its threshold, against the ledger's own bench database."""
    with tempfile.NamedTemporaryFile("w", suffix=".pgbench", delete=False) as script:
        script.write(same_sql_script())
    try:
        arguments = ("-n", "-M", "prepared", "-f", script.name, "-D", f"members={members}")
        return 2 * _pgbench_tps(*arguments, clients=clients, seconds=seconds, database=database)
    finally:
        os.unlink(script.name)


# --- 2. expiry vs raw UPDATE ----------------------------------------------------------------

#: Every round starts from the same due lots (the expire entries of an earlier round removed, so
#: the next run writes them again instead of finding them done).
RESET_LOTS = """
    UPDATE point_lots SET remaining = points, expired_points = 0, status = 'available', expired_by_entry_id = NULL;
    ALTER TABLE point_entries DISABLE TRIGGER point_entries_append_only;  -- the bench's reset only
    DELETE FROM point_entries WHERE kind = 'expire';
    ALTER TABLE point_entries ENABLE TRIGGER point_entries_append_only;
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
    parser.add_argument("--seconds", type=int, default=10, help="per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lots", type=int, default=1_000_000)
    parser.add_argument("--skip-expiry", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    env = bench_environment()

    if not args.skip_throughput:
        print(f"award + spend, {args.clients} clients, {args.rounds} alternating rounds of {args.seconds} s ...")
        fresh_database(env)
        seed_members(MEMBERS_FOR_THROUGHPUT, lots_each=1)
        pgbench_init()
        ours_rates, floor_rates, same_rates = [], [], []
        for number in range(1, args.rounds + 1):
            ours_rates.append(ledger_tps(args.clients, args.seconds, number))
            floor_rates.append(pgbench_tps(args.clients, args.seconds))
            same_rates.append(same_sql_tps(args.clients, args.seconds, MEMBERS_FOR_THROUGHPUT, BENCH_DB))
            print(
                f"  round {number}: ledger {ours_rates[-1]:7.1f} tx/s, pgbench {floor_rates[-1]:7.1f} tx/s,"
                f" ratio {ours_rates[-1] / floor_rates[-1]:.2f}; the same SQL through pgbench {same_rates[-1]:7.1f}"
                f" tx/s, ratio {ours_rates[-1] / same_rates[-1]:.2f}",
                flush=True,
            )
        ours, floor, same = (sum(rates) / args.rounds for rates in (ours_rates, floor_rates, same_rates))
        print(f"  ledger award+spend: {ours:8.1f} tx/s")
        print(f"  pgbench tpcb-like:  {floor:8.1f} tx/s")
        print(f"  the same SQL through pgbench: {same:8.1f} tx/s")
        print(f"ledger / pgbench tpcb-like throughput ratio: {ours / floor:.2f}   (target >= 0.5)", flush=True)
        rounds = " ".join(f"{o / f:.2f}" for o, f in zip(ours_rates, floor_rates, strict=True))
        print(f"per round: {rounds}", flush=True)
        print(
            f"ledger / the same SQL through pgbench: {ours / same:.2f} (what Python, SQLAlchemy and the app add;"
            f" the same SQL / tpcb-like: {same / floor:.2f})",
            flush=True,
        )

    if args.skip_expiry:
        return
    members = args.lots // 10
    print(f"\nnightly expiry of {args.lots:,} due lots ({members:,} members x 10) ...", flush=True)
    fresh_database(env)
    seed_members(members, lots_each=10, due=True)
    floors, ours_times = [], []
    for number in range(1, args.rounds + 1):
        floors.append(raw_update_seconds())
        seconds, summary = expiry_seconds()
        ours_times.append(seconds)
        print(
            f"  round {number}: raw UPDATE {floors[-1]:6.2f} s, expiry {seconds:6.2f} s ({summary}),"
            f" ratio {seconds / floors[-1]:.2f}",
            flush=True,
        )
    floor_seconds, our_seconds = sum(floors) / args.rounds, sum(ours_times) / args.rounds
    print(f"  raw UPDATE:         {floor_seconds:8.2f} s")
    print(f"  expiry batch:       {our_seconds:8.2f} s")
    print(f"expiry / raw UPDATE time ratio: {our_seconds / floor_seconds:.2f}   (target <= 2)")
    print("per round: " + " ".join(f"{o / f:.2f}" for o, f in zip(ours_times, floors, strict=True)))


if __name__ == "__main__":
    main()
