"""The operators' referral funnel over 1,000,000 referral rows, as a ratio against a plain COUNT.

The bench seeds its own database (``loyalty_bench_referrals``): 200 dealers, 1,200,000 members,
1,000,000 referrals over the last 12 months with realistic milestone rates (test drive 45%, order
25%, delivery 20%, 2% cancelled), inserted in attribution order as production inserts them. It
then alternates rounds of

* floor: ``SELECT count(*) FROM referrals`` (the whole table), and
* ours: the funnel query the back office runs (``referrals.funnel.funnel_statement``: one pass,
  grouped by dealer and business month, over the same 12 months = the same rows),

and prints each round's times and ratio, then the medians. A single-month funnel (the last full
month, what the back-office page asks for) is timed the same way against a COUNT of that month.

    python bench/referrals.py [--rows 1000000] [--rounds 5] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB = "loyalty_bench_referrals"
PG = "host=127.0.0.1 user=postgres"
DB_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DB}"


def _sql(statements: str) -> None:
    with psycopg.connect(f"{PG} dbname={DB}", autocommit=True) as conn:
        for statement in statements.split(";"):
            if statement.strip():
                conn.execute(statement)


def fresh_database() -> None:
    with psycopg.connect(f"{PG} dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    env = {**os.environ, "LOYALTY_DATABASE_URL": DB_URL, "LOYALTY_ENV": "development", "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True
    )


def seed(rows: int) -> None:
    """Set-based: dealers, members (referrers are the first fifth), referrals with milestones."""
    referrers = rows // 5
    _sql(f"""
        INSERT INTO dealers (code, name, region, city, active, created_at)
        SELECT 'B' || lpad(g::text, 4, '0'), 'Bench dealer ' || g, 'north', 'city', true, now()
        FROM generate_series(1, 200) g;
        INSERT INTO members (member_no, status, enrollment_channel, locale, customer_type, lifecycle_stage,
                             enrolled_at, created_at, updated_at)
        SELECT '7' || lpad(g::text, 10, '0'), 'active', 'referral', 'zh_CN', 'private', 'new', now(), now(), now()
        FROM generate_series(1, {rows + referrers}) g;
        CREATE TEMP TABLE IF NOT EXISTS _x (n int);
        INSERT INTO referrals (referrer_member_id, referee_member_id, code, dealer_id, milestone, reward_status,
                               review, flags, attributed_at, expires_at, test_drive_at, ordered_at, delivered_at,
                               cancelled_at, rewarded_at, reward_points, clawed_back_points, created_at, updated_at)
        SELECT r.referrer, r.referee, 'C' || r.referrer, r.dealer,
               CASE WHEN r.cancelled THEN 'cancelled' WHEN r.roll < 0.20 THEN 'delivery' WHEN r.roll < 0.25 THEN 'order'
                    WHEN r.roll < 0.45 THEN 'test_drive' ELSE 'lead' END,
               CASE WHEN r.cancelled THEN 'clawed_back' WHEN r.roll < 0.19 THEN 'credited'
                    WHEN r.roll < 0.20 THEN 'capped' ELSE 'none' END,
               'none', '[]'::jsonb, r.at, r.at + interval '180 days',
               CASE WHEN r.roll < 0.45 THEN r.at + interval '3 days' END,
               CASE WHEN r.roll < 0.25 THEN r.at + interval '10 days' END,
               CASE WHEN r.roll < 0.20 THEN r.at + interval '30 days' END,
               CASE WHEN r.cancelled THEN r.at + interval '40 days' END,
               CASE WHEN r.roll < 0.19 THEN r.at + interval '30 days' END,
               CASE WHEN r.roll < 0.19 THEN 2000 ELSE 0 END,
               CASE WHEN r.cancelled THEN 2000 ELSE 0 END,
               r.at, r.at
        FROM (
            SELECT g AS referee_no, m0.first_id + {referrers} + g - 1 AS referee,
                   m0.first_id + (g % {referrers}) AS referrer,
                   d0.first_id + (g % 200) AS dealer,
                   random() AS roll, random() < 0.02 AS cancelled,
                   now() - (random() * interval '360 days') AS at
            FROM generate_series(1, {rows}) g,
                 (SELECT min(id) AS first_id FROM members) m0,
                 (SELECT min(id) AS first_id FROM dealers) d0
        ) r
        ORDER BY r.at;  -- rows arrive in attribution order, as they do in production
        VACUUM ANALYZE
    """)


def _timed(conn: psycopg.Connection, sql: str) -> tuple[float, int]:
    started = time.perf_counter()
    rows = conn.execute(sql).fetchall()
    return time.perf_counter() - started, len(rows)


def funnel_sql(first: dt.date, last: dt.date) -> str:
    """The back office's funnel statement, compiled for PostgreSQL with its parameters inlined."""
    os.environ.update(LOYALTY_DATABASE_URL=DB_URL, LOYALTY_ENV="development", LOYALTY_LOG_LEVEL="WARNING")
    from sqlalchemy.dialects import postgresql

    from app import create_app
    from app.referrals.funnel import funnel_statement

    with create_app().app_context():
        statement = funnel_statement(first, last)
        return str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def compare(label: str, floor_sql: str, ours_sql: str, rounds: int) -> None:
    floors, ours = [], []
    with psycopg.connect(f"{PG} dbname={DB}", autocommit=True) as conn:
        _timed(conn, floor_sql), _timed(conn, ours_sql)  # warm the cache once
        for n in range(rounds):
            floor_s, _ = _timed(conn, floor_sql)
            ours_s, groups = _timed(conn, ours_sql)
            floors.append(floor_s)
            ours.append(ours_s)
            print(f"  round {n + 1}: COUNT {floor_s * 1000:7.1f} ms   funnel {ours_s * 1000:7.1f} ms "
                  f"({groups} dealer-months)   ratio {ours_s / floor_s:.2f}", flush=True)  # fmt: skip
    floor_m, ours_m = statistics.median(floors), statistics.median(ours)
    print(f"{label}: funnel {ours_m * 1000:.1f} ms / COUNT {floor_m * 1000:.1f} ms = ratio {ours_m / floor_m:.2f}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="reuse the seeded database of a previous run")
    args = parser.parse_args()
    if not args.keep:
        print(f"seeding {args.rows:,} referrals ...", flush=True)
        started = time.perf_counter()
        fresh_database()
        seed(args.rows)
        print(f"  seeded in {time.perf_counter() - started:.0f} s", flush=True)
    today = dt.datetime.now(dt.UTC).date()
    first = (today.replace(day=1) - dt.timedelta(days=365)).replace(day=1)
    year_sql = funnel_sql(first, today.replace(day=1))
    print("whole table (12 months, every dealer):")
    compare("12-month funnel", "SELECT count(*) FROM referrals", year_sql, args.rounds)
    month = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    month_sql = funnel_sql(month, month)
    next_month = (month + dt.timedelta(days=32)).replace(day=1)
    month_count = (
        "SELECT count(*) FROM referrals WHERE attributed_at >= "
        f"'{month.isoformat()} 00:00+08' AND attributed_at < '{next_month.isoformat()} 00:00+08'"
    )
    print(f"last full month, {month:%Y-%m} (every dealer):")
    compare("1-month funnel", month_count, month_sql, args.rounds)


if __name__ == "__main__":
    main()
