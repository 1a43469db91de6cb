"""Mini-app balance reads: authenticated ``GET /api/v1/me/points`` per second vs ``/healthz``.

Both run on the same gunicorn server, in the same run, driven by the same client. Each balance read
verifies the session token, loads the session, identity and member, computes the ETag and reads
the balance (available, pending, expiring in 30 and 90 days, next expiry) on PostgreSQL. A third
pass sends ``If-None-Match`` with the ETag the member already holds (the mini-app's usual refresh)
and gets 304. Last, reads are offered at a steady rate (open loop) for the p99 the SPEC sets a
target for (balance read p99 < 20 ms).

    .venv/bin/python bench/miniapp.py [--reads 6000] [--members 500] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
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
    run_load,
    run_paced,
)


def members_with_tokens(env: dict[str, str], count: int) -> list[str]:
    """``count`` registered members, each with three point lots (one close to expiry) and a
    signed-in mini-app session; returns their bearer tokens."""
    os.environ.update(env)
    from app import create_app
    from app.core.clock import utcnow
    from app.core.db import db
    from app.members import registration, sessions
    from app.points import ledger

    app = create_app()
    tokens = []
    with app.app_context():
        now = utcnow()
        for i in range(count):
            identity = sessions.sign_in(f"o-bench-{i}", "session-key", None).identity
            member = registration.register(
                identity,
                policy_version=registration.POLICY_VERSION.value(),
                purposes=["service_notifications"],
                phone=f"136{i:08d}",
            ).member
            for lot, days_ago in enumerate((715, 300, 0)):  # lots expire 24 months after earning
                ledger.earn(
                    ledger.Earning(
                        member_id=member.id,
                        currency="reward",
                        points=100 * (lot + 1),
                        idempotency_key=f"bench-{i}-{lot}",
                        source_type="bench",
                        occurred_at=now - dt.timedelta(days=days_ago),
                    )
                )
            tokens.append(sessions.sign_in(f"o-bench-{i}", "session-key", None).token)
        db.session.commit()
    return tokens


def etag_for(port: int, token: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/api/v1/me/points", headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    response.read()
    return response.getheader("ETag") or ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=6000)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--steady-rate", type=float, default=100.0, help="requests/s for the p99 at steady load")
    parser.add_argument("--port", type=int, default=5803)
    args = parser.parse_args()

    env = bench_environment()
    fresh_database(env)
    flush_redis()
    tokens = members_with_tokens(env, args.members)

    def read(i: int) -> Request:
        return "GET", "/api/v1/me/points", b"", {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}

    reads = [read(i) for i in range(args.reads)]
    health = [("GET", "/healthz", b"", {})] * args.reads

    with gunicorn("wsgi:app", env, args.port):
        run_load("warm-up", args.port, reads[:400] + health[:400], args.concurrency)
        floor = run_load("/healthz (floor)", args.port, health, args.concurrency)
        ours = run_load("GET /api/v1/me/points", args.port, reads, args.concurrency)
        etags = {token: etag_for(args.port, token) for token in tokens}
        revalidations = [
            (method, path, body, {**headers, "If-None-Match": etags[headers["Authorization"][7:]]})
            for method, path, body, headers in reads
        ]
        cached = run_load("same, If-None-Match -> 304", args.port, revalidations, args.concurrency)
        steady_count = int(args.steady_rate * 20)
        steady = run_paced(
            f"balance at steady {args.steady_rate:.0f}/s",
            args.port,
            [read(i) for i in range(steady_count)],
            args.steady_rate,
        )
        floor_again = run_load("/healthz (again)", args.port, health, args.concurrency)

    assert set(ours.statuses) == {200}, f"unexpected statuses {ours.statuses}"
    assert set(cached.statuses) == {304}, f"unexpected statuses {cached.statuses}"
    best_floor = max(floor.rate, floor_again.rate)
    report(
        [floor.line(), ours.line(), cached.line(), floor_again.line(), steady.line()],
        "balance reads / healthz throughput ratio",
        ours.rate / best_floor,
    )
    print(f"304 revalidations / healthz throughput ratio: {cached.rate / best_floor:.2f}")
    p99 = steady.percentile(99)
    print(f"balance read p99 at a steady {args.steady_rate:.0f}/s: {p99:.1f} ms (SPEC target < 20 ms)")
    flush_redis()


if __name__ == "__main__":
    main()
