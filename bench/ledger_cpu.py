"""CPU per award+spend pair (this process and its PostgreSQL backend, from /proc), for A/B runs.

One process, one connection, the bench's own loop (``ledger.earn`` + commit, ``ledger.spend`` +
commit). CPU per pair does not depend on how loaded the machine is nearly as much as a rate does,
so two trees or two schemas compared block by block, alternating, give a usable A/B at any load.

    .venv/bin/python bench/ledger_cpu.py --db NAME [--seed] [--pairs 600] [--warmup 200] [--tree DIR]
    .venv/bin/python bench/ledger_cpu.py --db NAME --pairs 100 --ab-outbox 10   # in-process A/B
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# the pair the bench counts, from this checkout's harness; with --tree, the app it runs is that tree's
from bench.common import cpu_seconds
from bench.ledger import award_and_spend


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--seed", action="store_true", help="recreate the database with 10,000 members first")
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--tag", default="")
    parser.add_argument("--tree", help="import the app from this checkout (A/B of two trees)")
    parser.add_argument(
        "--ab-outbox",
        type=int,
        metavar="BLOCKS",
        help="alternate, in this one process, BLOCKS blocks of --pairs with the CRM outbox row by its"
        " one-row statement and by the several-rows statement (main's path before ledger3)",
    )
    args = parser.parse_args()
    if args.tree:
        sys.path.insert(0, str(Path(args.tree).resolve()))

    import bench.common as common

    common.BENCH_DB = args.db
    os.environ["LOYALTY_BENCH_DB"] = args.db
    env = common.bench_environment(LOYALTY_DATABASE_URL=common.database_url(args.db))
    if args.seed:
        from bench.seeding import seed_members

        common.fresh_database(env, args.db)
        seed_members(10_000, lots_each=1, dbname=args.db)
        return
    os.environ.update(env)
    import sqlalchemy as sa

    from app import create_app
    from app.core.db import db
    from app.points.models import PointAccount

    app = create_app()
    rng = random.Random()
    tag = f"{os.getpid()}-{time.time_ns()}"
    with app.app_context():
        member_ids = db.session.scalars(sa.select(PointAccount.member_id)).all()
        backend = db.session.scalar(sa.text("SELECT pg_backend_pid()"))
        db.session.commit()

        def pairs(count: int) -> None:
            for n in range(count):
                award_and_spend(rng.choice(member_ids), f"{tag}-{n}-{rng.random()}")

        pairs(args.warmup)
        if args.ab_outbox:
            _ab_outbox(pairs, backend, args.pairs, args.ab_outbox)
            return
        client0, backend0, wall0 = time.process_time(), cpu_seconds(backend), time.perf_counter()
        pairs(args.pairs)
        client = (time.process_time() - client0) / args.pairs * 1e6
        server = (cpu_seconds(backend) - backend0) / args.pairs * 1e6
        wall = (time.perf_counter() - wall0) / args.pairs * 1e6
    load = os.getloadavg()[0]
    print(
        f"{args.tag or args.db}: per pair client {client:6.0f} us, backend {server:6.0f} us,"
        f" total {client + server:6.0f} us, wall {wall:6.0f} us (load {load:.1f})",
        flush=True,
    )


def _ab_outbox(pairs, backend: int, per_block: int, blocks: int) -> None:
    from collections import Counter

    from app.crm import outbox

    one_row = outbox._number_and_insert_one

    def several_rows(session, member_id, kind, refs, now):
        outbox._number_and_insert(session, [(member_id, kind, refs)], Counter([member_id]), now)

    paths = {"one-row statement": one_row, "several-rows statement": several_rows}
    spent = {name: [0.0, 0.0] for name in paths}
    for block in range(blocks):
        for name in list(paths)[:: 1 if block % 2 else -1]:
            outbox._number_and_insert_one = paths[name]
            client0, backend0 = time.process_time(), cpu_seconds(backend)
            pairs(per_block)
            spent[name][0] += time.process_time() - client0
            spent[name][1] += cpu_seconds(backend) - backend0
    outbox._number_and_insert_one = one_row
    count = per_block * blocks
    for name, (client, server) in spent.items():
        print(
            f"{name}: per pair client {client / count * 1e6:6.0f} us, backend {server / count * 1e6:6.0f} us,"
            f" total {(client + server) / count * 1e6:6.0f} us (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
