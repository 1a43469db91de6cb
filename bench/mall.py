"""Mall redemptions: ``POST /api/v1/me/redemptions`` per second vs the ledger's own spend rate.

Ours: gunicorn serves the mini-app API; each request authenticates the member (consent checked),
inserts the order (unique request id), locks the point account, counts the member's limits, spends
through ``ledger.spend`` under the order's key, takes stock by a conditional UPDATE, issues a
voucher (encrypted code) and commits. Floor, in the same run: worker processes calling
``ledger.spend`` and committing, for the same members, as many as the load has connections (and
gunicorn has worker processes): what a redemption adds on top of the spend it must make anyway.
Floor and ours alternate in rounds (the shared VM's speed drifts); each round's ratio is printed.
Target ≥ 0.5.

    .venv/bin/python bench/mall.py [--members 400] [--requests 3000] [--rounds 3] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    LoadResult,
    Request,
    bench_environment,
    combined,
    flush_redis,
    fresh_database,
    gunicorn,
    report,
    run_load,
)

POINTS_EACH = 10_000_000
PRICE = 100


def members_with_tokens(env: dict[str, str], count: int) -> list[tuple[int, str]]:
    """``count`` registered members with plenty of points and a mini-app session; one open coupon."""
    os.environ.update(env)
    from app import create_app
    from app.core.db import db
    from app.mall import catalog
    from app.members import registration, sessions
    from app.points import ledger

    app = create_app()
    members = []
    with app.app_context():
        catalog.create_item(
            "bench_coupon",
            {
                "kind": "coupon",
                "name": {"zh_CN": "压测券", "en": "Bench coupon"},
                "description": {"zh_CN": ""},
                "points_price": PRICE,
                "stock": 10_000_000,
                "cost_fen": 1000,
                "eligible_tiers": [],
            },
            actor="cli:bench",
        )
        for i in range(count):
            identity = sessions.sign_in(f"o-mall-bench-{i}", "session-key", None).identity
            member = registration.register(
                identity,
                policy_version=registration.POLICY_VERSION.value(),
                purposes=["service_notifications"],
                phone=f"137{i:08d}",
            ).member
            ledger.earn(
                ledger.Earning(
                    member_id=member.id,
                    currency="reward",
                    points=POINTS_EACH,
                    idempotency_key=f"bench-mall-{i}",
                    source_type="bench",
                )
            )
            members.append((member.id, sessions.sign_in(f"o-mall-bench-{i}", "session-key", None).token))
        db.session.commit()
    return members


def _spend_worker(member_ids: list[int], seconds: float, seed: int, queue: multiprocessing.Queue) -> None:
    os.environ.update(bench_environment(LOYALTY_BENCH_DB=os.environ.get("LOYALTY_BENCH_DB", "loyalty_bench")))
    from app import create_app
    from app.core.db import db
    from app.points import ledger

    app = create_app()
    rng = random.Random(seed)
    done = 0
    with app.app_context():
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            ledger.spend(rng.choice(member_ids), PRICE, idempotency_key=f"floor:{seed}:{done}", source_type="bench")
            db.session.commit()
            done += 1
    queue.put(done)


def spend_rate(member_ids: list[int], clients: int, seconds: float, round_number: int) -> LoadResult:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    seeds = [round_number * 1000 + i for i in range(clients)]
    workers = [multiprocessing.Process(target=_spend_worker, args=(member_ids, seconds, s, queue)) for s in seeds]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    total = sum(queue.get() for _ in workers)
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    return LoadResult(
        "ledger.spend (floor)", total, elapsed, [1000 * elapsed / max(total, 1)] * max(total, 1), {200: total}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=400)
    parser.add_argument("--requests", type=int, default=3000, help="redemptions in all, split over the rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--port", type=int, default=5807)
    args = parser.parse_args()

    env = bench_environment()
    fresh_database(env)
    flush_redis()
    members = members_with_tokens(env, args.members)
    member_ids = [member_id for member_id, _ in members]

    def redemption(i: int) -> Request:
        _member_id, token = members[i % len(members)]
        body = json.dumps({"item": "bench_coupon", "quantity": 1, "request_id": f"bench-{i:08d}"}).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return "POST", "/api/v1/me/redemptions", body, headers

    requests = [redemption(i) for i in range(args.requests)]
    floor_parts, our_parts, ratios = [], [], []
    # as many server processes as floor processes: on a shared, overloaded VM the scheduler gives
    # CPU per process, so 2 gunicorn workers against 8 floor processes would measure the scheduler
    with gunicorn("wsgi:app", env, args.port, workers=args.concurrency, threads=1):
        run_load("warm-up", args.port, [redemption(args.requests + i) for i in range(200)], args.concurrency)
        for round_number in range(args.rounds):
            ours = run_load("POST /me/redemptions", args.port, requests[round_number :: args.rounds], args.concurrency)
            # the floor runs as long as our round took: the same share of the VM's drift
            floor = spend_rate(member_ids, args.concurrency, max(ours.seconds, 3.0), round_number)
            floor_parts.append(floor)
            our_parts.append(ours)
            ratios.append(ours.rate / floor.rate)
            print(f"round {round_number + 1}: ours {ours.rate:.1f}/s, floor {floor.rate:.1f}/s, ratio {ratios[-1]:.2f}")
    ours_all = combined("POST /me/redemptions", our_parts)
    floor_all = combined("ledger.spend (floor)", floor_parts)
    assert set(ours_all.statuses) == {201}, f"unexpected statuses {ours_all.statuses}"
    report(
        [floor_all.line(), ours_all.line()],
        "redemptions / ledger spends throughput ratio",
        ours_all.rate / floor_all.rate,
        target="≥ 0.5",
    )
    print("round ratios: " + ", ".join(f"{r:.2f}" for r in ratios))
    flush_redis()


if __name__ == "__main__":
    main()
