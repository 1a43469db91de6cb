"""Set-based seeding shared by the benchmarks: SQL run statement by statement, members with
accounts and point lots. Everything is ``INSERT … SELECT generate_series``, so a million rows take
seconds, not hours."""

from __future__ import annotations

import psycopg

from bench.common import BENCH_DB

PG = "host=127.0.0.1 user=postgres"


def run_sql(statements: str, dbname: str = BENCH_DB, params: dict | None = None) -> None:
    """Run ``;``-separated statements one by one (VACUUM cannot share a transaction)."""
    with psycopg.connect(f"{PG} dbname={dbname}", autocommit=True) as conn:
        for statement in statements.split(";"):
            if statement.strip():
                conn.execute(statement, params)


def scalar(query: str, dbname: str = BENCH_DB, params: dict | None = None):
    with psycopg.connect(f"{PG} dbname={dbname}", autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def seed_members(
    count: int,
    lots_each: int = 0,
    due: bool = False,
    *,
    dbname: str = BENCH_DB,
    birth_month_days: bool = False,
    enrolled_over_days: int = 0,
    first: int = 1,
) -> None:
    """Members with accounts (and optionally ``lots_each`` lots of 100 points), inserted set-based.

    ``due``: the lots expired long ago (else they expire in two years). ``birth_month_days``: birthdays
    spread evenly over the 366 month-days of a leap year (one member in 366 has one on any day).
    ``enrolled_over_days``: enrolment dates spread over that many days back (else now). ``first``:
    the number of the first member (member_no ``8`` + 10 digits): a later call with ``first`` past
    the last one adds members (and their accounts and lots) to those seeded before."""
    expires = "'2020-01-31'" if due else "now() + interval '2 years'"
    birth = "to_char(date '2000-01-01' + (g % 366), 'MMDD')::smallint" if birth_month_days else "NULL"
    enrolled = f"now() - (g % {enrolled_over_days}) * interval '1 day'" if enrolled_over_days else "now()"
    added = f"WHERE member_no >= '8' || lpad('{first}', 10, '0')" if first > 1 else ""
    run_sql(
        f"""
        INSERT INTO members (member_no, status, enrollment_channel, locale, customer_type, lifecycle_stage,
                             birth_month_day, enrolled_at, created_at, updated_at)
        SELECT '8' || lpad(g::text, 10, '0'), 'active', 'import', 'zh_CN', 'private', 'new', {birth},
               {enrolled}, now(), now()
        FROM generate_series({first}, {first + count - 1}) g;
        INSERT INTO point_accounts (member_id, reward_available, reward_pending, reward_debt, tier_points,
                                    lifetime_earned, lifetime_spent, lifetime_expired, updated_at)
        SELECT id, {100 * lots_each}, 0, 0, 0, {100 * lots_each}, 0, 0, now() FROM members {added};
        """,
        dbname,
    )
    if lots_each:
        run_sql(
            f"""
            INSERT INTO point_entries (member_id, currency, kind, points, idempotency_key, source_type, funder,
                                       occurred_at, created_at)
            SELECT m.id, 'reward', 'earn', 100, 'seed:' || m.id || ':' || k, 'bench', 'oem', now(), now()
            FROM members m, generate_series(1, {lots_each}) k {added};
            INSERT INTO point_lots (member_id, entry_id, points, remaining, status, available_at, expires_at,
                                    expired_points, funder, created_at)
            SELECT member_id, id, 100, 100, 'available', now(), {expires}, 0, 'oem', now()
            FROM point_entries e WHERE source_type = 'bench'
            {"AND NOT EXISTS (SELECT 1 FROM point_lots l WHERE l.entry_id = e.id)" if first > 1 else ""};
            VACUUM ANALYZE;
            """,
            dbname,
        )
