"""Mini-app balance reads: authenticated ``GET /api/v1/me/points`` per second vs ``/healthz``.

Both run on the same gunicorn server, in the same run, driven by the same client, in alternating
rounds (floor, balance, 304, floor, balance, 304 …; each round's ratios are printed). Each balance
read verifies the session token, loads the session, identity and member, computes the ETag and
reads the balance (available, pending, expiring in 30 and 90 days, next expiry) on PostgreSQL. The
304 pass sends ``If-None-Match`` with the ETag the member already holds (the mini-app's usual
refresh). Last, reads are offered at a steady rate (open loop) for the p99 the SPEC sets a target
for (balance read p99 < 20 ms).

``--population 100000,1000000``: instead of ``--members`` made through the app, seed that many
members set-based (accounts, lots, a mini-app identity and a signed-in session each;
``seeding.py``), read ``--sample`` members spread at random over the whole population, then grow it
to the next size and read again: p50/p99 per population and their ratio (flat: ≤ 1.2×).

    .venv/bin/python bench/miniapp.py [--reads 6000] [--members 500] [--concurrency 8] [--rounds 6]
    .venv/bin/python bench/miniapp.py --population 100000,1000000 [--sample 2000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import random
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BENCH_DB,
    LoadResult,
    Request,
    bench_environment,
    combined,
    cpu_seconds,
    flush_redis,
    fresh_database,
    gunicorn,
    report,
    run_load,
    run_paced,
)
from bench.seeding import PG, run_sql, seed_members


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


def seed_population(env: dict[str, str], grow_from: int, population: int) -> None:
    """Members ``grow_from + 1 … population`` set-based: accounts and 2 lots each (``seed_members``),
    a mini-app identity and a session signed in now (valid for the 2 hours of a refresh period)."""
    started = time.perf_counter()
    seed_members(population - grow_from, lots_each=2, first=grow_from + 1)
    run_sql(
        f"""
        INSERT INTO wechat_identities (member_id, app_kind, app_id, openid, following, created_at)
        SELECT id, 'miniapp', 'wxbenchminiapp', 'o-pop-' || id, false, now() FROM members WHERE id > {grow_from};
        INSERT INTO miniapp_sessions (identity_id, created_at, signed_in_at, expires_at)
        SELECT id, now(), now(), now() + interval '2 hours' FROM wechat_identities WHERE member_id > {grow_from};
        VACUUM ANALYZE members, point_accounts, point_lots, wechat_identities, miniapp_sessions
        """
    )
    print(f"seeded members {grow_from + 1:,}–{population:,} in {time.perf_counter() - started:.0f} s", flush=True)


def tokens_of_sessions(env: dict[str, str], session_ids: list[int]) -> list[str]:
    os.environ.update(env)
    from app import create_app
    from app.members import sessions

    app = create_app()
    with app.app_context():
        return [sessions._serializer().dumps(session_id) for session_id in session_ids]


def postgres_cpu() -> float:
    """Seconds of CPU the PostgreSQL backends connected to the bench database have used (from /proc)."""
    with psycopg.connect(f"{PG} dbname=postgres", autocommit=True) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (BENCH_DB,)
            )
        ]
    return sum(cpu_seconds(pid) for pid in pids)


def in_process(env: dict[str, str], tokens: list[str], session_ids: list[int], reads: int) -> dict[str, float]:
    """The balance read through the Flask test client (no HTTP, no gunicorn, one thread): CPU µs per
    read of this process and of its PostgreSQL backend, wall p50/p99, and the shared buffers one
    read's statement touches (EXPLAIN ANALYZE over ``session_ids``). CPU and buffers hardly move
    with the other processes on the machine, so they show what the population size changes."""
    os.environ.update(env)
    from app import create_app
    from app.core.db import db
    from app.members import sessions

    app = create_app()
    client = app.test_client()

    def read(i: int) -> None:
        response = client.get("/api/v1/me/points", headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"})
        assert response.status_code == 200, response.status_code

    for i in range(200):
        read(i)
    latencies = []
    cpu, pg = time.process_time(), postgres_cpu()
    for i in range(reads):
        started = time.perf_counter()
        read(i)
        latencies.append((time.perf_counter() - started) * 1000)
    cpu, pg = (time.process_time() - cpu) / reads * 1e6, (postgres_cpu() - pg) / reads * 1e6
    with app.app_context():
        compiled = sessions._SESSION_WITH_BALANCE.compile(dialect=db.engine.dialect)
    buffers, executions = [], []
    with psycopg.connect(f"{PG} dbname={BENCH_DB}", autocommit=True) as conn:
        for session_id in session_ids:
            params = {**compiled.params, "session_id": session_id}
            plan = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {compiled}", params).fetchone()[0][0]
            buffers.append(plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"])
            executions.append(plan["Execution Time"])
    latencies.sort()
    return {
        "cpu_us": cpu,
        "pg_cpu_us": pg,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
        "buffers": statistics.mean(buffers),
        "execution_ms": statistics.median(executions),
    }


def etag_for(port: int, token: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/api/v1/me/points", headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    response.read()
    return response.getheader("ETag") or ""


def reads_of(tokens: list[str], count: int) -> list[Request]:
    return [
        ("GET", "/api/v1/me/points", b"", {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}) for i in range(count)
    ]


def alternating(
    port: int, passes: list[tuple[str, list[Request]]], concurrency: int, rounds: int
) -> tuple[list[LoadResult], list[list[float]]]:
    """The passes in alternating rounds (the first is the floor): each pass's total, and per round
    each later pass's rate / the floor's rate in that round."""
    parts: list[list[LoadResult]] = [[] for _ in passes]
    ratios: list[list[float]] = [[] for _ in passes[1:]]
    for round_number in range(rounds):
        for index, (label, requests) in enumerate(passes):
            parts[index].append(run_load(label, port, requests[round_number::rounds], concurrency))
        for index in range(1, len(passes)):
            ratios[index - 1].append(parts[index][-1].rate / parts[0][-1].rate)
    return [combined(label, found) for (label, _), found in zip(passes, parts, strict=True)], ratios


def uptime() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def small(args: argparse.Namespace, env: dict[str, str]) -> None:
    fresh_database(env)
    flush_redis()
    tokens = members_with_tokens(env, args.members)
    reads = reads_of(tokens, args.reads)
    health = [("GET", "/healthz", b"", {})] * args.reads

    with gunicorn("wsgi:app", env, args.port):
        run_load("warm-up", args.port, reads[:400] + health[:400], args.concurrency)
        etags = {token: etag_for(args.port, token) for token in tokens}
        revalidations = [
            (method, path, body, {**headers, "If-None-Match": etags[headers["Authorization"][7:]]})
            for method, path, body, headers in reads
        ]
        passes = [
            ("/healthz (floor)", health),
            ("GET /api/v1/me/points", reads),
            ("same, If-None-Match -> 304", revalidations),
        ]
        (floor, ours, cached), (ratios, cached_ratios) = alternating(args.port, passes, args.concurrency, args.rounds)
        steady = run_paced(
            f"balance at steady {args.steady_rate:.0f}/s",
            args.port,
            reads_of(tokens, int(args.steady_rate * 20)),
            args.steady_rate,
        )

    assert set(ours.statuses) == {200}, f"unexpected statuses {ours.statuses}"
    assert set(cached.statuses) == {304}, f"unexpected statuses {cached.statuses}"
    report(
        [floor.line(), ours.line(), cached.line(), steady.line()],
        "balance reads / healthz throughput ratio",
        ours.rate / floor.rate,
        target=">= 0.5",
        rounds=ratios,
    )
    print(f"304 revalidations / healthz throughput ratio: {cached.rate / floor.rate:.2f}")
    print(f"per round ({args.rounds} alternating rounds): " + " ".join(f"{ratio:.2f}" for ratio in cached_ratios))
    p99 = steady.percentile(99)
    print(f"balance read p99 at a steady {args.steady_rate:.0f}/s: {p99:.1f} ms (SPEC target < 20 ms)")
    flush_redis()


def populations(args: argparse.Namespace, env: dict[str, str]) -> None:
    sizes = sorted(int(size) for size in args.population.split(","))
    fresh_database(env)
    flush_redis()
    health = [("GET", "/healthz", b"", {})] * args.reads
    results: list[tuple[int, LoadResult, LoadResult, list[float], LoadResult]] = []
    measures: list[dict[str, float]] = []
    seeded = 0
    picker = random.Random(18)
    for size in sizes:
        seed_population(env, seeded, size)
        seeded = size
        members = sorted(picker.sample(range(1, size + 1), args.sample))  # spread over the whole population
        session_ids = _sessions_of(members)
        tokens = tokens_of_sessions(env, session_ids)
        picker.shuffle(tokens)
        measured = in_process(env, tokens, session_ids[:200], args.in_process_reads)
        print(
            f"{size:,} members, in process: {measured['cpu_us']:.0f} µs CPU + {measured['pg_cpu_us']:.0f} µs "
            f"PostgreSQL per read, p50 {measured['p50_ms']:.2f} ms p99 {measured['p99_ms']:.2f} ms; "
            f"{measured['buffers']:.1f} shared buffers, {measured['execution_ms']:.3f} ms execution per statement",
            flush=True,
        )
        reads = reads_of(tokens, args.reads)
        with gunicorn("wsgi:app", env, args.port):
            run_load("warm-up", args.port, reads_of(tokens, len(tokens)) + health[:400], args.concurrency)
            (floor, ours), (ratios,) = alternating(
                args.port,
                [("/healthz (floor)", health), (f"balance, {size:,} members", reads)],
                args.concurrency,
                args.rounds,
            )
            steady = run_paced(
                f"balance at steady {args.steady_rate:.0f}/s",
                args.port,
                reads_of(tokens, int(args.steady_rate * 20)),
                args.steady_rate,
            )
        assert set(ours.statuses) == {200}, f"unexpected statuses {ours.statuses}"
        results.append((size, floor, ours, ratios, steady))
        measures.append(measured)
        report(
            [floor.line(), ours.line(), steady.line()],
            f"{size:,} members: balance reads / healthz throughput ratio",
            ours.rate / floor.rate,
            target=">= 0.5",
            rounds=ratios,
        )
    print()
    print(f"{'members':>10} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'steady p50':>10} {'steady p99':>10}")
    for size, floor, ours, _, steady in results:
        print(
            f"{size:>10,} {ours.rate / floor.rate:6.2f} {statistics.median(ours.latencies_ms):7.2f} "
            f"{ours.percentile(99):7.2f} {steady.percentile(50):10.2f} {steady.percentile(99):10.2f}"
        )
    (small_size, _, small_ours, _, small_steady), (big_size, _, big_ours, _, big_steady) = results[0], results[-1]

    def growth(big: LoadResult, small: LoadResult, p: float) -> float:
        return big.percentile(p) / small.percentile(p)

    first, last = measures[0], measures[-1]
    print(
        f"{big_size:,} / {small_size:,} members, in process: CPU {last['cpu_us'] / first['cpu_us']:.2f}×, "
        f"PostgreSQL CPU {last['pg_cpu_us'] / max(first['pg_cpu_us'], 1):.2f}×, "
        f"p50 {last['p50_ms'] / first['p50_ms']:.2f}×, "
        f"p99 {last['p99_ms'] / first['p99_ms']:.2f}×, buffers {last['buffers'] / first['buffers']:.2f}×, "
        f"execution {last['execution_ms'] / first['execution_ms']:.2f}×"
    )
    print(
        f"{big_size:,} / {small_size:,} members: under load p50 {growth(big_ours, small_ours, 50):.2f}× "
        f"p99 {growth(big_ours, small_ours, 99):.2f}×; at a steady {args.steady_rate:.0f}/s "
        f"p50 {growth(big_steady, small_steady, 50):.2f}× p99 {growth(big_steady, small_steady, 99):.2f}×"
        " (target ≤ 1.2×)"
    )
    flush_redis()


def _sessions_of(member_ids: list[int]) -> list[int]:
    with psycopg.connect(f"{PG} dbname={BENCH_DB}") as conn:
        rows = conn.execute(
            "SELECT s.id FROM miniapp_sessions s JOIN wechat_identities i ON i.id = s.identity_id "
            "WHERE i.member_id = ANY(%s)",
            (member_ids,),
        ).fetchall()
    return [row[0] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=6000, help="requests per pass (split over the rounds)")
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6, help="alternating floor/ours rounds")
    parser.add_argument("--steady-rate", type=float, default=100.0, help="requests/s for the p99 at steady load")
    parser.add_argument("--population", help="comma-separated member counts, seeded set-based, e.g. 100000,1000000")
    parser.add_argument("--sample", type=int, default=2000, help="members read per population")
    parser.add_argument(
        "--in-process-reads", type=int, default=3000, help="reads through the test client per population"
    )
    parser.add_argument("--port", type=int, default=5803)
    args = parser.parse_args()

    env = bench_environment()
    print(f"load average at start {uptime()}", flush=True)
    if args.population:
        populations(args, env)
    else:
        small(args, env)
    print(f"load average at end {uptime()}", flush=True)


if __name__ == "__main__":
    main()
