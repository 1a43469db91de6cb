"""Benefit bookings: ``POST /api/v1/me/bookings`` per second vs the balance read, same server, same run.

Each booking verifies the session token (the member's tier comes with it), finds the catalog entry
in force (the process's copy, read again every 5 s), checks tier, pilot and window, inserts the booking
(unique per member and request id: a resend conflicts there), takes one
of the member's yearly home test drives under the holder's advisory lock (entitlement rows), takes
a seat with the conditional ``UPDATE`` on the slot, and publishes ``BookingConfirmed`` (care checks
consent and opt-outs and plans the confirmation and reminder in one insert). The floor is
the simplest authenticated endpoint, ``GET /api/v1/me/points``, for the same members. Floor and
ours alternate in rounds (the VM's speed drifts); last, bookings are offered at a steady rate
(open loop) for the p99 (target: ratio ≥ 0.3, p99 < 200 ms at a steady 50 bookings/s).

    .venv/bin/python bench/booking.py [--bookings 1500] [--rounds 6] [--concurrency 8] [--steady-rate 50]

Several people on one machine: set ``LOYALTY_BENCH_DB`` and ``LOYALTY_BENCH_REDIS_DB``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Request,
    bench_environment,
    flush_redis,
    fresh_database,
    gunicorn,
    report,
    run_interleaved,
    run_load,
    run_paced,
)

BENEFIT = "home_test_drive"
PER_MEMBER = 3  # Diamond: three free home test drives a year
SLOTS = 40


def diamond_members_and_slots(env: dict[str, str], count: int) -> tuple[list[str], list[int]]:
    """``count`` registered Diamond members with mini-app sessions (their bearer tokens), the
    default catalog, and ``SLOTS`` test-drive slots at one dealer, large enough for every booking."""
    os.environ.update(env)
    from app import create_app
    from app.benefits import catalog, slots
    from app.core.clock import utcnow
    from app.core.db import db
    from app.dealers.models import Dealer
    from app.members import registration, sessions
    from app.tiers import policy

    app = create_app()
    with app.app_context():
        catalog.seed_defaults(actor="bench")
        dealer = Dealer(code="B0001", name="bench dealer", region="north", city="长春")
        db.session.add(dealer)
        db.session.flush()
        start = utcnow().replace(minute=0, second=0, microsecond=0) + dt.timedelta(days=3)
        slot_ids = [
            slots.publish_slot(
                dealer,
                service_type="test_drive",
                starts_at=start + dt.timedelta(hours=i),
                ends_at=start + dt.timedelta(hours=i, minutes=45),
                capacity=1000,
                actor="bench",
            ).id
            for i in range(SLOTS)
        ]
        tokens = []
        for i in range(count):
            identity = sessions.sign_in(f"o-book-{i}", "session-key", None).identity
            member = registration.register(
                identity,
                policy_version=registration.POLICY_VERSION.value(),
                purposes=["service_notifications"],
                phone=f"137{i:08d}",
            ).member
            policy.change_tier(policy.get_state(member.id, lock=True), "diamond", "upgrade", 0, utcnow())
            tokens.append(sessions.sign_in(f"o-book-{i}", "session-key", None).token)
        db.session.commit()
    return tokens, slot_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=1500, help="bookings in the alternating rounds")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--steady-rate", type=float, default=50.0, help="bookings/s for the p99 at steady load")
    parser.add_argument("--steady-seconds", type=float, default=20.0)
    parser.add_argument("--port", type=int, default=5804)
    args = parser.parse_args()

    steady_count = int(args.steady_rate * args.steady_seconds)
    warmup = 100
    total = warmup + args.bookings + steady_count
    env = bench_environment()
    fresh_database(env)
    flush_redis()
    tokens, slot_ids = diamond_members_and_slots(env, -(-total // PER_MEMBER))

    def book(i: int) -> Request:
        # Consecutive requests come from different members; each member books at most three.
        member = i % len(tokens)
        body = {"benefit": BENEFIT, "slot": slot_ids[i % SLOTS], "request_id": f"bench-booking-{i:08d}"}
        headers = {"Authorization": f"Bearer {tokens[member]}", "Content-Type": "application/json"}
        return "POST", "/api/v1/me/bookings", json.dumps(body).encode(), headers

    def balance(i: int) -> Request:
        return "GET", "/api/v1/me/points", b"", {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}

    bookings = [book(i) for i in range(total)]
    reads = [balance(i) for i in range(args.bookings)]

    with gunicorn("wsgi:app", env, args.port):
        run_load("warm-up", args.port, bookings[:warmup] + reads[:warmup], args.concurrency)
        labels = ("GET /me/points (floor)", "POST /me/bookings")
        measured = bookings[warmup : warmup + args.bookings]
        floor, ours, ratios = run_interleaved(labels, args.port, reads, measured, args.concurrency, args.rounds)
        steady = run_paced(
            f"bookings at {args.steady_rate:.0f}/s", args.port, bookings[warmup + args.bookings :], args.steady_rate
        )

    assert set(ours.statuses) == {201}, f"unexpected statuses {ours.statuses}"
    assert set(steady.statuses) == {201}, f"unexpected statuses {steady.statuses}"
    report(
        [floor.line(), ours.line(), steady.line()],
        "bookings / balance reads throughput ratio",
        ours.rate / floor.rate,
        target=">= 0.3",
        rounds=ratios,
    )
    print(
        f"booking p99 at a steady {args.steady_rate:.0f}/s: {steady.percentile(99):.1f} ms "
        f"(p50 {steady.percentile(50):.1f} ms; target p99 < 200 ms)"
    )
    flush_redis()


if __name__ == "__main__":
    main()
