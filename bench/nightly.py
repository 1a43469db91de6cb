"""The whole nightly run over a large member base, each step against its raw-SQL floor.

Seeds ``--members`` members with ``bench/population.py`` (lots, tiers, cars, service history,
yesterday's lifecycle stages) into ``<db>_seed``, copies it to ``<db>`` (``CREATE DATABASE …
TEMPLATE``, so a run can be repeated with ``--reuse`` without seeding again), then runs the night's
jobs through the project's code, in the order of their schedule (``flask jobs periodic``):

1. expiry             ``expiry.expire_due_lots``        (00:30)
2. pending release    ``expiry.release_due_pending``    (hourly)
3. tier review        ``tier_review.review_due_tiers``  (02:00)
4. reminder planning  ``planning.plan`` kind by kind, as ``planning.plan_todays_reminders`` (03:00)
5. dashboard rollups  ``rollup.reroll_window``          (03:45)

Before each step its floor runs: one plain UPDATE / INSERT … SELECT doing the same rows' essential
work (listed with each floor below), timed, then rolled back (the aborted rows are vacuumed away,
untimed, before our step runs on the same rows). Target: the whole night (the sum of our steps)
inside 60 minutes, and each step within 2× its floor. Reports disk use (``pg_database_size``,
``df``) and the load average before and after.

    .venv/bin/python bench/nightly.py --members 100000          # seed, copy, run the night
    .venv/bin/python bench/nightly.py --members 100000 --reuse  # copy the seeded base again, run
    .venv/bin/python bench/nightly.py --drop                    # drop both databases

Database ``LOYALTY_BENCH_DB`` (default ``loyalty_bench_nightly``) and ``<that>_seed``; Redis db
``LOYALTY_BENCH_REDIS_DB`` and the next.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.common import VENV_BIN, bench_environment, database_url, flush_redis  # noqa: E402
from bench.seeding import PG  # noqa: E402

DB = os.environ.get("LOYALTY_BENCH_DB", "loyalty_bench_nightly")
SEED_DB = f"{DB}_seed"
HOUR = 3600.0


def _admin() -> psycopg.Connection:
    return psycopg.connect(f"{PG} dbname=postgres", autocommit=True)


def _exists(name: str) -> bool:
    with _admin() as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def seed(members: int, chunk: int, into: str = SEED_DB) -> None:
    from bench.population import populate

    env = bench_environment(LOYALTY_DATABASE_URL=database_url(into))
    with _admin() as conn:
        for name in {into, SEED_DB}:  # a seeded base left from another run is stale now
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{into}"')
    subprocess.run([str(VENV_BIN / "alembic"), "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True)
    print(f"seeding {members:,} members into {into} ...", flush=True)
    seconds = populate(members, dbname=into, chunk=chunk)
    print(f"seeded in {seconds:.0f} s ({members / seconds:,.0f} members/s)", flush=True)


def copy_seeded() -> float:
    """A fresh working copy of the seeded base (a file copy: no WAL for every page)."""
    started = time.perf_counter()
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}" TEMPLATE "{SEED_DB}" STRATEGY FILE_COPY')
    return time.perf_counter() - started


def _run_sql(sql: str, params: dict | None = None, *, rollback: bool) -> tuple[float, int]:
    """Run ``sql`` (one statement) in a transaction; time it; roll back or commit. Returns the
    seconds and the rows it reported."""
    with psycopg.connect(f"{PG} dbname={DB}") as conn:
        conn.execute("SELECT 1")
        started = time.perf_counter()
        cursor = conn.execute(sql, params)
        rows = cursor.rowcount
        elapsed = time.perf_counter() - started
        conn.rollback() if rollback else conn.commit()
    return elapsed, rows


def _vacuum(tables: tuple[str, ...]) -> float:
    started = time.perf_counter()
    with psycopg.connect(f"{PG} dbname={DB}", autocommit=True) as conn:
        for table in tables:
            conn.execute(f"VACUUM (ANALYZE) {table}")
    return time.perf_counter() - started


# --- the floors --------------------------------------------------------------------------------

_NOTIFY = """INSERT INTO notifications (member_id, kind, channel, dedupe_key, period, status, payload, attempts,
                           created_at, due_at)
SELECT member_id, CAST(%(kind)s AS text), 'official_template',
       CAST(%(kind)s AS text) || ':' || member_id || ':' || period, period, 'planned', '{}'::jsonb, 0, now(), %(due)s
FROM ("""

#: Expiry: what ours does to the same rows, in one statement without chunks or locks: one
#: ``expire`` entry per member, the due lots zeroed and pointed at it, the balances moved.
#: (Until 2026-12-03 afternoon the floor only zeroed the lots, ``bench/ledger.py``'s floor.)
FLOOR_EXPIRY = """WITH due AS (
    SELECT member_id, sum(remaining) AS points FROM point_lots
    WHERE status = 'available' AND remaining > 0 AND expires_at <= %(now)s GROUP BY member_id),
entries AS (
    INSERT INTO point_entries (member_id, currency, kind, points, idempotency_key, source_type, funder,
                               occurred_at, created_at)
    SELECT member_id, 'reward', 'expire', -points, 'expire-floor:' || member_id, 'expiry', 'oem', %(now)s, %(now)s
    FROM due RETURNING id, member_id, -points AS points),
lots AS (
    UPDATE point_lots l SET expired_points = l.remaining, remaining = 0, status = 'expired', expired_by_entry_id = e.id
    FROM entries e
    WHERE l.member_id = e.member_id AND l.status = 'available' AND l.remaining > 0 AND l.expires_at <= %(now)s)
UPDATE point_accounts a SET reward_available = a.reward_available - e.points,
       lifetime_expired = a.lifetime_expired + e.points, updated_at = %(now)s
FROM entries e WHERE a.member_id = e.member_id"""

#: Pending release: the due pending lots made available and the accounts' pending moved.
FLOOR_RELEASE = """WITH released AS (
    UPDATE point_lots SET status = 'available' WHERE status = 'pending' AND available_at <= %(now)s
    RETURNING member_id, remaining),
per_member AS (SELECT member_id, sum(remaining) AS points FROM released GROUP BY member_id)
UPDATE point_accounts a SET reward_pending = a.reward_pending - p.points,
       reward_available = a.reward_available + p.points, updated_at = %(now)s
FROM per_member p WHERE a.member_id = p.member_id"""

#: Tier review: due states kept (next anniversary) or dropped a tier (tier change, frozen points as
#: a tier ``expire`` entry, the account's tier points, and — since 2026-12-03 afternoon, as ours
#: writes them — the member's ``tier_dropped`` notice and CRM outbox rows, balance and tier).
FLOOR_TIER_REVIEW = """WITH due AS (
    SELECT t.member_id, t.tier, t.review_on, a.tier_points,
           (t.last_qualifying_at IS NULL OR t.last_qualifying_at <
              ((t.review_on - interval '12 months')::date::timestamp AT TIME ZONE 'Asia/Shanghai')) AS drops,
           CASE t.tier WHEN 'gold' THEN 'silver' WHEN 'platinum' THEN 'gold' ELSE 'platinum' END AS lower,
           CASE t.tier WHEN 'gold' THEN 0 WHEN 'platinum' THEN 150000 ELSE 300000 END AS lower_threshold
    FROM tier_states t JOIN point_accounts a ON a.member_id = t.member_id
    WHERE t.review_on IS NOT NULL AND t.review_on <= %(today)s),
judged AS (SELECT *, greatest(0, tier_points - lower_threshold) AS frozen FROM due),
states AS (
    UPDATE tier_states t
    SET tier = CASE WHEN j.drops THEN j.lower ELSE t.tier END,
        achieved_at = CASE WHEN j.drops THEN %(now)s ELSE t.achieved_at END,
        review_on = CASE WHEN NOT j.drops THEN (j.review_on + interval '1 year')::date
                         WHEN j.lower = 'silver' THEN NULL ELSE (%(today)s + interval '1 year')::date END,
        updated_at = %(now)s
    FROM judged j WHERE t.member_id = j.member_id),
changes AS (
    INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, tier_points, changed_at)
    SELECT member_id, tier, lower, 'review_drop', tier_points, %(now)s FROM judged WHERE drops),
frozen AS (
    INSERT INTO point_entries (member_id, currency, kind, points, idempotency_key, source_type, funder,
                               occurred_at, created_at)
    SELECT member_id, 'tier', 'expire', -frozen, 'tier-freeze:' || member_id || ':' || review_on, 'tier_review',
           'oem', %(now)s, %(now)s
    FROM judged WHERE drops AND frozen > 0),
notices AS (
    INSERT INTO notifications (member_id, kind, channel, dedupe_key, period, status, payload, attempts,
                               created_at, due_at)
    SELECT member_id, 'tier_dropped', 'official_template',
           'tier_dropped:' || member_id || ':' || lower || ':' || %(today)s, lower || ':' || %(today)s, 'planned',
           jsonb_build_object('from_tier', tier, 'to_tier', lower), 0, %(now)s, %(now)s
    FROM judged WHERE drops),
synced AS (
    INSERT INTO crm_member_sync (member_id, last_seq) SELECT member_id, 2 FROM judged WHERE drops ORDER BY member_id
    ON CONFLICT (member_id) DO UPDATE SET last_seq = crm_member_sync.last_seq + excluded.last_seq
    RETURNING member_id, last_seq),
outbox AS (
    INSERT INTO crm_outbox (member_id, seq, kind, payload, idempotency_key, status, attempts, next_attempt_at,
                            created_at)
    SELECT s.member_id, s.last_seq - 2 + k.n, k.kind, '{}'::jsonb,
           'loyalty-' || s.member_id || '-' || (s.last_seq - 2 + k.n), 'pending', 0, %(now)s, %(now)s
    FROM synced s CROSS JOIN (VALUES (1, 'balance'), (2, 'tier')) k(n, kind))
UPDATE point_accounts a SET tier_points = a.tier_points - j.frozen, updated_at = %(now)s
FROM judged j WHERE a.member_id = j.member_id AND j.drops AND j.frozen > 0"""

_PLANNING_ROWS = {
    "points_expiring": """
        SELECT member_id, %(period30)s AS period FROM point_lots
        WHERE status = 'available' AND remaining > 0 AND expires_at > %(start30)s AND expires_at <= %(end30)s
        GROUP BY member_id
        UNION ALL
        SELECT member_id, %(period7)s FROM point_lots
        WHERE status = 'available' AND remaining > 0 AND expires_at > %(start7)s AND expires_at <= %(end7)s
        GROUP BY member_id""",
    "anniversary": """
        SELECT m.id AS member_id, %(year)s AS period FROM members m
        JOIN unnest(CAST(%(starts)s AS timestamptz[])) s ON m.enrolled_at >= s AND m.enrolled_at < s + interval '1 day'
        WHERE m.status = 'active'""",
    "tier_at_risk": """
        SELECT member_id, %(tier_period)s AS period FROM tier_states
        WHERE review_on = %(review_on)s AND (last_qualifying_at IS NULL OR last_qualifying_at < %(inactive_since)s)""",
    "birthday": """
        SELECT id AS member_id, %(year)s AS period FROM members
        WHERE status = 'active' AND birth_month_day = ANY(%(month_days)s)""",
    "maintenance_due": """
        SELECT o.member_id, v.id || ':' || d.due AS period
        FROM vehicles v
        JOIN ownerships o ON o.vehicle_id = v.id AND o.role = 'owner' AND o.ended_on IS NULL
        JOIN members m ON m.id = o.member_id AND m.status = 'active'
        LEFT JOIN maintenance_intervals i ON i.model_code = v.model_code
        CROSS JOIN (SELECT months, km FROM maintenance_intervals WHERE model_code = 'default') fallback
        CROSS JOIN LATERAL (
            SELECT least(
                (coalesce(v.last_service_on, v.purchase_date)
                 + coalesce(i.months, fallback.months) * interval '1 month')::date,
                CASE WHEN v.last_service_on > v.purchase_date AND v.last_service_km > 0
                     THEN v.last_service_on + ceil(coalesce(i.km, fallback.km)::numeric
                                                   * (v.last_service_on - v.purchase_date) / v.last_service_km)::int
                END) AS due) d
        WHERE d.due - %(lead)s <= CAST(%(today)s AS date) AND CAST(%(today)s AS date) <= d.due""",
    "insurance_renewal": """
        SELECT o.member_id, v.id || ':' || %(ends_on)s AS period
        FROM vehicles v
        JOIN ownerships o ON o.vehicle_id = v.id AND o.role = 'owner' AND o.ended_on IS NULL
        JOIN members m ON m.id = o.member_id AND m.status = 'active'
        WHERE v.insurance_ends_on = %(ends_on)s""",
}

#: The lifecycle pass (``win_back``): every member's stage from the same interactions, the changed
#: rows written (current row, ``members`` mirror, history) and a win-back for each active member
#: entering churn risk. (Ours also opens a callback task for each.)
FLOOR_LIFECYCLE = (
    """WITH judged AS (
    SELECT m.id AS member_id, m.status, l.stage AS old, x.last,
           CASE WHEN %(now)s - x.last >= interval '365 days' THEN 'churned'
                WHEN %(now)s - x.last >= interval '90 days' THEN 'churn_risk'
                WHEN %(now)s - m.enrolled_at < interval '90 days' THEN 'new'
                WHEN (m.enrolled_at AT TIME ZONE 'Asia/Shanghai')::date <= %(two_years_ago)s OR x.vehicles >= 2
                    THEN 'mature'
                ELSE 'growing' END AS stage
    FROM members m
    LEFT JOIN member_lifecycle l ON l.member_id = m.id
    CROSS JOIN LATERAL (
        SELECT greatest(m.enrolled_at, m.activated_at,
                        (SELECT max(s.signed_in_at) FROM miniapp_sessions s JOIN wechat_identities w
                           ON w.id = s.identity_id WHERE w.member_id = m.id),
                        (SELECT max(w.followed_at) FROM wechat_identities w WHERE w.member_id = m.id),
                        (SELECT max(w.last_message_at) FROM wechat_identities w WHERE w.member_id = m.id),
                        (SELECT a.last_activity_at FROM point_accounts a WHERE a.member_id = m.id)) AS last,
               (SELECT count(*) FROM ownerships o
                WHERE o.member_id = m.id AND o.role = 'owner' AND o.ended_on IS NULL) AS vehicles) x
    WHERE m.status IN ('active', 'pre_enrolled', 'frozen') AND m.enrolled_at <= %(now)s),
changed AS MATERIALIZED (SELECT * FROM judged WHERE old IS DISTINCT FROM stage),
current_rows AS (
    UPDATE member_lifecycle l SET stage = c.stage, since = %(now)s, last_interaction_at = c.last,
           computed_at = %(now)s
    FROM changed c WHERE l.member_id = c.member_id),
mirror AS (UPDATE members m SET lifecycle_stage = c.stage FROM changed c WHERE m.id = c.member_id),
history AS (
    INSERT INTO member_lifecycle_history (member_id, from_stage, to_stage, at)
    SELECT member_id, old, stage, %(now)s FROM changed)
"""
    + _NOTIFY
    + """
    SELECT member_id, %(period)s AS period FROM changed
    WHERE stage = 'churn_risk' AND old IS DISTINCT FROM 'churn_risk' AND status = 'active') r"""
)

#: Dashboard rollups: each source's rows of the re-rolled window read once and grouped by day,
#: dealer and key, plus the two stocks' opening balances (members, points) over all history,
#: into a bare copy of ``daily_metrics``.
FLOOR_ROLLUP = """INSERT INTO daily_metrics_floor (metric, day, dealer_id, key, value)
SELECT 'members', (m.enrolled_at AT TIME ZONE 'Asia/Shanghai')::date, coalesce(m.enrolling_dealer_id, 0),
       m.enrollment_channel || coalesce(m.enrolling_staff_id::text, ''), count(*)
FROM members m WHERE m.enrolled_at >= %(t0)s AND m.enrolled_at < %(t1)s GROUP BY 2, 3, 4
UNION ALL
SELECT 'members_base', %(d0)s, coalesce(m.enrolling_dealer_id, 0), '', count(*)
FROM members m WHERE m.enrolled_at < %(t0)s AND m.status NOT IN ('merged', 'closed') GROUP BY 3
UNION ALL
SELECT 'points', (e.occurred_at AT TIME ZONE 'Asia/Shanghai')::date, coalesce(m.enrolling_dealer_id, 0),
       e.kind, sum(e.points)
FROM point_entries e JOIN members m ON m.id = e.member_id
WHERE e.currency = 'reward' AND e.occurred_at >= %(t0)s AND e.occurred_at < %(t1)s GROUP BY 2, 3, 4
UNION ALL
SELECT 'points_base', %(d0)s, coalesce(m.enrolling_dealer_id, 0), '', sum(e.points)
FROM point_entries e JOIN members m ON m.id = e.member_id
WHERE e.currency = 'reward' AND e.occurred_at < %(t0)s GROUP BY 3
UNION ALL
SELECT 'active_member_days', day, 0, '', count(*) FROM (
    SELECT DISTINCT (e.occurred_at AT TIME ZONE 'Asia/Shanghai')::date AS day, e.member_id FROM point_entries e
    WHERE e.kind <> 'expire' AND e.occurred_at >= %(ta)s AND e.occurred_at < %(t1)s) a GROUP BY 2
UNION ALL
SELECT 'tier_changes', (c.changed_at AT TIME ZONE 'Asia/Shanghai')::date, 0, c.to_tier, count(*)
FROM tier_changes c WHERE c.changed_at < %(t1)s GROUP BY 2, 4
UNION ALL
SELECT 'notifications', (n.created_at AT TIME ZONE 'Asia/Shanghai')::date, coalesce(m.enrolling_dealer_id, 0),
       n.kind || '|' || n.channel || '|' || n.status, count(*)
FROM notifications n LEFT JOIN members m ON m.id = n.member_id
WHERE n.created_at >= %(t0)s AND n.created_at < %(t1)s GROUP BY 2, 3, 4"""


# --- the steps ---------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    floor: Callable[[], tuple[float, int]]
    ours: Callable[[], tuple[float, str]]
    vacuum: tuple[str, ...]


@dataclass
class Result:
    name: str
    floor: float
    floor_rows: int
    ours: float
    summary: str


def _app():
    # The jobs run in worker / cron processes, deployed with a longer statement timeout than the
    # web's 30 s (app/config.py); at 10M the rollup's tier-mix statement needs it.
    os.environ.setdefault("LOYALTY_DB_STATEMENT_TIMEOUT_MS", "600000")
    os.environ.update(bench_environment(LOYALTY_DATABASE_URL=database_url(DB)))  # the night's working copy
    from app import create_app

    return create_app()


def _timed(app, fn: Callable[[], object]) -> tuple[float, object]:
    import sqlalchemy as sa

    from app.core.db import db

    with app.app_context():
        db.session.execute(sa.text("SELECT 1"))
        db.session.commit()
        started = time.perf_counter()
        outcome = fn()
        db.session.commit()
        elapsed = time.perf_counter() - started
        db.session.remove()
    return elapsed, outcome


def steps(app, now: dt.datetime, today: dt.date) -> list[Step]:
    from app.care import planning, rules
    from app.core.clock import business_day_start
    from app.points import expiry, tier_review
    from app.reporting import rollup
    from app.tiers import policy

    with app.app_context():
        review_on = today + dt.timedelta(days=policy.AT_RISK_DAYS.value())
        starts = []
        for years in range(1, planning.MAX_ANNIVERSARY_YEARS + 1):
            day = planning._same_day_in(today.year - years, today)
            if day is not None:
                starts.append(business_day_start(day))
        ends_on = today + dt.timedelta(days=planning.INSURANCE_REMINDER_DAYS.value())
        params: dict = {
            "now": now,
            "today": today,
            "due": rules.reminder_time(today),
            "year": str(today.year),
            "month_days": rules.birthday_month_days(today),
            "starts": starts,
            "review_on": review_on,
            "tier_period": review_on.isoformat(),
            "inactive_since": policy._inactive_since(review_on),
            "ends_on": ends_on,
            "lead": int(planning.MAINTENANCE_LEAD_DAYS.value()),
            "period": today.isoformat(),
            "two_years_ago": today.replace(year=today.year - 2),
        }
        for days in planning.EXPIRY_REMINDER_DAYS:
            last_day = today + dt.timedelta(days=days)
            params[f"start{days}"] = business_day_start(last_day)
            params[f"end{days}"] = business_day_start(last_day + dt.timedelta(days=1))
            params[f"period{days}"] = f"{last_day.isoformat()}:{days}d"
        first = today - dt.timedelta(days=max(1, int(rollup.REROLL_DAYS.value())) - 1)
        params.update(
            d0=first,
            t0=business_day_start(first),
            t1=business_day_start(today + dt.timedelta(days=1)),
            ta=business_day_start(first - dt.timedelta(days=29)),
        )

    def floor(sql: str, extra: dict | None = None) -> Callable[[], tuple[float, int]]:
        return lambda: _run_sql(sql, {**params, **(extra or {})}, rollback=True)

    def ours(fn: Callable[[], object], describe: Callable[[object], str] = str) -> Callable[[], tuple[float, str]]:
        def run() -> tuple[float, str]:
            elapsed, outcome = _timed(app, fn)
            return elapsed, describe(outcome)

        return run

    def plan(kind: str) -> Callable[[], object]:
        return lambda: planning.plan(today, kinds=[kind])[0].rows

    result = [
        Step("expiry", floor(FLOOR_EXPIRY), ours(expiry.expire_due_lots), ("point_lots",)),
        Step(
            "pending release",
            floor(FLOOR_RELEASE),
            ours(expiry.release_due_pending, lambda n: f"{n} members"),
            ("point_lots", "point_accounts"),
        ),
        Step(
            "tier review",
            floor(FLOOR_TIER_REVIEW),
            ours(tier_review.review_due_tiers),
            ("tier_states", "tier_changes", "point_entries", "point_accounts"),
        ),
    ]
    for kind in ("points_expiring", "anniversary", "tier_at_risk", "birthday", "maintenance_due", "insurance_renewal"):
        sql = _NOTIFY + _PLANNING_ROWS[kind] + ") r"
        result.append(
            Step(
                f"planning: {kind}",
                floor(sql, {"kind": kind}),
                ours(plan(kind), lambda n: f"{n} rows"),
                ("notifications",),
            )
        )
    result.append(
        Step(
            "planning: win_back (lifecycle)",
            floor(FLOOR_LIFECYCLE, {"kind": "win_back"}),
            ours(plan("win_back"), lambda n: f"{n} entered churn risk"),
            ("member_lifecycle", "members", "member_lifecycle_history", "notifications"),
        )
    )
    result.append(
        Step(
            "dashboard rollups",
            lambda: _rollup_floor(params),
            ours(rollup.reroll_window, lambda r: f"{r['rows']} rows"),  # type: ignore[index]
            (),
        )
    )
    return result


def _rollup_floor(params: dict) -> tuple[float, int]:
    with psycopg.connect(f"{PG} dbname={DB}") as conn:
        conn.execute("CREATE TABLE daily_metrics_floor (LIKE daily_metrics)")
        started = time.perf_counter()
        rows = conn.execute(FLOOR_ROLLUP, params).rowcount
        elapsed = time.perf_counter() - started
        conn.rollback()
    return elapsed, rows


def disk_report() -> list[str]:
    lines = []
    with psycopg.connect(f"{PG} dbname={DB}", autocommit=True) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        lines.append(f"pg_database_size({DB}) = {size / 2**30:.2f} GiB")
        for name, total in conn.execute(
            """SELECT relname, pg_total_relation_size(c.oid) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2 DESC LIMIT 8"""
        ):
            lines.append(f"  {name:<24} {total / 2**30:6.2f} GiB (with indexes)")
        if _exists(SEED_DB):
            seed_size = conn.execute("SELECT pg_database_size(%s)", (SEED_DB,)).fetchone()[0]
            lines.append(f"pg_database_size({SEED_DB}) = {seed_size / 2**30:.2f} GiB")
    for path in ("/work", "/var/lib/postgresql"):
        usage = shutil.disk_usage(path)
        lines.append(f"df {path}: {usage.used / 2**30:.0f} GiB used, {usage.free / 2**30:.0f} GiB free")
    return lines


def night(only: list[str] | None, vacuum: bool = True) -> list[Result]:
    from app.core.clock import business_today, utcnow

    app = _app()
    now, today = utcnow(), business_today()
    results = []
    for step in steps(app, now, today):
        if only and not any(word in step.name for word in only):
            continue
        floor_seconds, floor_rows = step.floor()
        if step.vacuum and vacuum:
            _vacuum(step.vacuum)
        our_seconds, summary = step.ours()
        results.append(Result(step.name, floor_seconds, floor_rows, our_seconds, summary))
        print(
            f"  {step.name:<32} ours {our_seconds:8.2f} s   floor {floor_seconds:8.2f} s ({floor_rows:,} rows)"
            f"   ratio {our_seconds / floor_seconds if floor_seconds else float('nan'):6.2f}×   {summary}",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100_000, help="members generated per transaction")
    parser.add_argument("--reuse", action="store_true", help="copy the already seeded base again, no seeding")
    parser.add_argument(
        "--no-copy", action="store_true", help="seed straight into the working database (half the disk; no --reuse)"
    )
    parser.add_argument(
        "--no-vacuum",
        action="store_true",
        help="skip the VACUUM between a floor and our step (minutes at 10M; ours then meets the floor's dead rows)",
    )
    parser.add_argument("--only", nargs="*", help="run only the steps whose names contain these words")
    parser.add_argument("--drop", action="store_true", help="drop the working and the seeded database, then exit")
    args = parser.parse_args()
    if args.drop:
        with _admin() as conn:
            for name in (DB, SEED_DB):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    print(f"load before: {os.getloadavg()}", flush=True)
    if args.no_copy:
        if not args.reuse or not _exists(DB):  # --reuse: run the night again on what is there
            seed(args.members, args.chunk, into=DB)
    else:
        if not args.reuse or not _exists(SEED_DB):
            seed(args.members, args.chunk)
        print(f"working copy {DB}: {copy_seeded():.0f} s", flush=True)
    flush_redis()
    print(f"the night over {args.members:,} members (each step: floor, rolled back; then ours) ...", flush=True)
    started = time.perf_counter()
    results = night(args.only, vacuum=not args.no_vacuum)
    wall = time.perf_counter() - started
    ours = sum(r.ours for r in results)
    floors = sum(r.floor for r in results)
    print()
    print("| step | ours | floor | ratio | what ours did |\n|---|---|---|---|---|")
    for r in results:
        ratio = r.ours / r.floor if r.floor else float("nan")
        print(f"| {r.name} | {r.ours:.1f} s | {r.floor:.1f} s ({r.floor_rows:,} rows) | {ratio:.2f}× | {r.summary} |")
    print(f"| **whole night** | **{ours:.0f} s ({ours / 60:.1f} min)** | {floors:.0f} s | {ours / floors:.2f}× | |")
    print(
        f"\nnight inside 60 minutes: {'met' if ours <= HOUR else 'MISSED'}; wall time with floors and vacuums "
        f"{wall:.0f} s"
    )
    for line in disk_report():
        print(line)
    print(f"load after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
