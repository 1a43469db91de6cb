"""A realistic member base for benchmarks, generated set-based in chunks with a progress bar.

``populate(10_000_000)`` writes, per chunk of members (``INSERT … SELECT generate_series``, every
value a function of the member number ``g`` so a rerun makes the same base):

* 200 dealers (once); members enrolled over five years (2% pre-enrolled, 60% by purchase), with
  birthdays spread over the 366 month-days and their lifecycle stage as the nightly pass judged it
  yesterday (``member_lifecycle`` and ``members.lifecycle_stage``);
* 1–3 point lots each (2 on average) with their ``earn`` entries, and a ``spend`` entry for every
  depleted lot (20%): 4% of lots fell due for expiry in the last day (a month-end night), the rest
  expire over the next two years (so the 30- and 7-day reminder windows hold 1/730 of them each);
  one member in 2,000 has purchase points pending whose lock ended an hour ago (and another one
  whose lock runs 3 more days); accounts carry the lots' sums and a last activity (60% within 30
  days, 15% 30–90, 15% 90–365, 10% longer);
* tiers for one member in five (gold; platinum 1 in 25, diamond 1 in 125) with a tier change each,
  reviews spread evenly over the coming year (1/365 due today), a third without qualifying activity
  in the last 12 months;
* a car for 80% of members and a second for 10% (models of ``maintenance_intervals`` and one
  without an interval row), bought over six years, 70% serviced in the last 13 months
  (``vehicle_servicings``, odometer at the last service), insurance ending spread over the year;
* a delivered notification for one member in five over the last 60 days (dashboard history).

Members, lots, entries and cars get explicit ids (sequences are set past them at the end). The
load runs with ``session_replication_role = replica``: foreign-key and append-only triggers are
skipped (every reference is generated consistent; the triggers guard the application's writes, not
a bulk load). VINs are stored as plain placeholders (nothing the nightly reads decrypts them).

    from bench.population import populate
    populate(1_000_000, dbname="my_bench_db")
"""

from __future__ import annotations

import datetime as dt
import sys
import time

import psycopg

from bench.seeding import PG

CHUNK = 100_000
DEALERS = 200

#: Per member (``g``): enrolment, activation, last points activity, cars, tier; and the lifecycle
#: stage those gave as of yesterday (the rules' defaults of ``care.lifecycle_rules``).
_MEMBERS = """
SELECT g, at AS enrolled_at, activated_at, active_at, vehicles, status,
       CASE WHEN y - greatest(at, activated_at, active_at) >= interval '365 days' THEN 'churned'
            WHEN y - greatest(at, activated_at, active_at) >= interval '90 days' THEN 'churn_risk'
            WHEN y - at < interval '90 days' THEN 'new'
            WHEN at <= y - interval '2 years' OR vehicles >= 2 THEN 'mature'
            ELSE 'growing' END AS stage,
       greatest(at, activated_at, active_at) AS last_interaction_at
FROM generate_series(CAST(%(lo)s AS bigint), CAST(%(hi)s AS bigint)) g
CROSS JOIN LATERAL (
    SELECT now() - ((g * 7919) %% 2628000) * interval '1 minute' AS at,
           now() - interval '1 day' AS y,
           (g %% 5 <> 4)::int + (g %% 10 = 1)::int AS vehicles,
           CASE WHEN g %% 50 = 7 THEN 'pre_enrolled' ELSE 'active' END AS status) a
CROSS JOIN LATERAL (
    SELECT CASE WHEN a.status = 'active' THEN least(a.at + interval '1 day', now()) END AS activated_at,
           greatest(a.at, now() - CASE WHEN g %% 20 < 12 THEN (g * 13) %% 30
                                       WHEN g %% 20 < 15 THEN 30 + (g * 17) %% 60
                                       WHEN g %% 20 < 18 THEN 90 + (g * 19) %% 275
                                       ELSE 365 + (g * 23) %% 700 END * interval '1 day'
                                 - ((g * 37) %% 1440) * interval '1 minute') AS active_at) b
"""

#: Per lot (member ``g``, lot ``k``): what kind of lot, its points and dates; id (g - 1) * 3 + k.
_LOTS = """
SELECT g AS member_id, (g - 1) * 3 + k AS id, 100 * (1 + (g + k) %% 20) AS points, c.kind,
       CASE c.kind WHEN 'due' THEN now() - (1 + (g + k) %% 1440) * interval '1 minute'
                   ELSE now() + interval '1 hour' + ((g * 131 + k * 977) %% 17520) * interval '1 hour'
       END AS expires_at,
       CASE c.kind WHEN 'pending_due' THEN now() - interval '1 hour'
                   WHEN 'pending' THEN now() + interval '3 days' ELSE now() END AS available_at
FROM generate_series(CAST(%(lo)s AS bigint), CAST(%(hi)s AS bigint)) g
CROSS JOIN LATERAL generate_series(1, 1 + (g %% 3)::int) k
CROSS JOIN LATERAL (
    SELECT CASE WHEN k = 1 AND g %% 2000 = 3 THEN 'pending_due'
                WHEN k = 1 AND g %% 2000 = 4 THEN 'pending'
                WHEN (g * 31 + k * 17) %% 25 = 0 THEN 'due'
                WHEN (g * 31 + k * 17) %% 5 = 1 THEN 'depleted'
                ELSE 'available' END AS kind) c
"""

_CHUNK_SQL = [
    # members, with yesterday's lifecycle stage
    f"""INSERT INTO members (id, member_no, status, enrollment_channel, locale, customer_type, lifecycle_stage,
                         enrolling_dealer_id, birth_month_day, enrolled_at, activated_at, created_at, updated_at,
                         birthday_changes)
    SELECT g, '7' || lpad(g::text, 10, '0'), status, CASE WHEN g %% 5 < 3 THEN 'purchase' ELSE 'miniapp' END,
           'zh_CN', 'private', stage, 1 + g %% {DEALERS},
           to_char(date '2000-01-01' + ((g * 7) %% 366)::int, 'MMDD')::smallint, enrolled_at, activated_at,
           enrolled_at, enrolled_at, 0
    FROM ({_MEMBERS}) m""",
    f"""INSERT INTO member_lifecycle (member_id, stage, since, last_interaction_at, computed_at)
    SELECT g, stage, now() - interval '1 day', last_interaction_at, now() - interval '1 day' FROM ({_MEMBERS}) m""",
    # earn entries and their lots, spend entries of the depleted lots
    f"""WITH lots AS MATERIALIZED ({_LOTS}),
    earned AS (
        INSERT INTO point_entries (id, member_id, currency, kind, points, idempotency_key, source_type, funder,
                                   occurred_at, created_at)
        SELECT id, member_id, 'reward', 'earn', points, 'seed:' || id, 'bench', 'oem',
               least(now() - interval '1 hour', expires_at - interval '2 years'),
               least(now() - interval '1 hour', expires_at - interval '2 years')
        FROM lots)
    INSERT INTO point_lots (id, member_id, entry_id, points, remaining, status, available_at, expires_at,
                            expired_points, funder, created_at)
    SELECT id, member_id, id, points, CASE kind WHEN 'depleted' THEN 0 ELSE points END,
           CASE WHEN kind LIKE 'pending%%' THEN 'pending' WHEN kind = 'depleted' THEN 'depleted' ELSE 'available' END,
           available_at, expires_at, 0, 'oem', least(now() - interval '1 hour', expires_at - interval '2 years')
    FROM lots""",
    """INSERT INTO point_entries (id, member_id, currency, kind, points, idempotency_key, source_type, funder,
                               occurred_at, created_at)
    SELECT %(spend_base)s + id, member_id, 'reward', 'spend', -points, 'seed-spend:' || id, 'bench', 'oem',
           least(now() - interval '1 minute', created_at + interval '30 days'),
           least(now() - interval '1 minute', created_at + interval '30 days')
    FROM point_lots WHERE member_id BETWEEN %(lo)s AND %(hi)s AND status = 'depleted'""",
    f"""INSERT INTO point_accounts (member_id, reward_available, reward_pending, reward_debt, tier_points,
                                lifetime_earned, lifetime_spent, lifetime_expired, last_activity_at, updated_at)
    SELECT m.g, s.available, s.pending, 0,
           CASE WHEN g %% 125 = 0 THEN 600000 WHEN g %% 25 = 0 THEN 300000 WHEN g %% 5 = 0 THEN 150000 ELSE 0 END
             + (g %% 1000) * 100,
           s.earned, s.earned - s.available - s.pending, 0, m.active_at, now()
    FROM ({_MEMBERS}) m
    JOIN (SELECT member_id, coalesce(sum(remaining) FILTER (WHERE status = 'available'), 0) AS available,
                 coalesce(sum(remaining) FILTER (WHERE status = 'pending'), 0) AS pending, sum(points) AS earned
          FROM point_lots WHERE member_id BETWEEN %(lo)s AND %(hi)s GROUP BY member_id) s ON s.member_id = m.g""",
    # tiers: one member in five, reviews spread over the coming year
    """WITH t AS (
        SELECT g, CASE WHEN g %% 125 = 0 THEN 'diamond' WHEN g %% 25 = 0 THEN 'platinum' ELSE 'gold' END AS tier,
               CAST(%(today)s AS date) + (((g / 5) * 53) %% 365)::int AS review_on
        FROM generate_series(CAST(%(lo)s AS bigint), CAST(%(hi)s AS bigint)) g WHERE g %% 5 = 0),
    states AS (
        INSERT INTO tier_states (member_id, tier, achieved_at, review_on, last_qualifying_at, updated_at)
        SELECT g, tier, (review_on - 365)::timestamp AT TIME ZONE 'Asia/Shanghai' + interval '10 hours', review_on,
               CASE WHEN (g / 5) %% 3 = 0 THEN now() - interval '400 days'
                    ELSE now() - ((g / 5) %% 300) * interval '1 day' END, now()
        FROM t)
    INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, tier_points, changed_at)
    SELECT g, 'silver', tier, 'upgrade', 150000, (review_on - 365)::timestamp AT TIME ZONE 'Asia/Shanghai'
                                                 + interval '10 hours'
    FROM t""",
    # cars: id g for 80% of members, id total + g for a second car of 10%
    f"""WITH cars AS MATERIALIZED (
        SELECT c.id, c.member_id, CAST(%(today)s AS date) - ((c.id * 11) %% 2190)::int AS bought
        FROM (SELECT g AS id, g AS member_id FROM generate_series(CAST(%(lo)s AS bigint), CAST(%(hi)s AS bigint)) g
              WHERE g %% 5 <> 4
              UNION ALL
              SELECT %(total)s + g, g FROM generate_series(CAST(%(lo)s AS bigint), CAST(%(hi)s AS bigint)) g
              WHERE g %% 10 = 1) c),
    serviced AS MATERIALIZED (
        SELECT id, member_id, bought,
               CASE WHEN id %% 10 < 7 THEN greatest(bought + 30, CAST(%(today)s AS date) - ((id * 7) %% 400)::int)
               END AS service_on
        FROM cars),
    vehicles_in AS (
        INSERT INTO vehicles (id, vin, vin_index, model_code, model_name, model_year, purchase_date,
                              selling_dealer_id, last_service_on, last_service_km, last_mileage_km,
                              insurance_ends_on, created_at, updated_at)
        SELECT id, 'bench-vin-' || id, md5(id::text),
               (ARRAY['MAGOTAN', 'SAGITAR', 'TIGUAN', 'ID4', 'PASSAT'])[1 + id %% 5],
               (ARRAY['Magotan', 'Sagitar', 'Tiguan', 'ID.4', 'Passat'])[1 + id %% 5],
               extract(year FROM bought)::int, bought, 1 + id %% {DEALERS}, service_on,
               CASE WHEN service_on IS NOT NULL THEN greatest(1, (service_on - bought) * (20 + id %% 60)) END,
               CASE WHEN service_on IS NOT NULL THEN greatest(1, (service_on - bought) * (20 + id %% 60)) END,
               CAST(%(today)s AS date) + ((id * 29) %% 365)::int, bought, now()
        FROM serviced),
    servicings AS (
        INSERT INTO vehicle_servicings (vehicle_id, dealer_id, first_serviced_on, last_serviced_on)
        SELECT id, 1 + id %% {DEALERS}, bought + 30, service_on FROM serviced WHERE service_on IS NOT NULL)
    INSERT INTO ownerships (member_id, vehicle_id, role, started_on, credited_dealer_id, created_at)
    SELECT member_id, id, 'owner', bought, 1 + id %% {DEALERS}, bought FROM cars""",
    # notification history for the dashboard
    """INSERT INTO notifications (member_id, kind, channel, dedupe_key, status, payload, attempts, created_at,
                               due_at, sent_at, finished_at, period)
    SELECT g, (ARRAY['points_expiring', 'birthday', 'maintenance_due', 'tier_upgrade'])[1 + (g / 5) %% 4],
           'official_template', 'seed:' || g, 'delivered', '{}'::jsonb, 1, t, t, t, t, 'seed'
    FROM generate_series(CAST(%(lo)s AS bigint), CAST(%(hi)s AS bigint)) g
    CROSS JOIN LATERAL (SELECT now() - ((g * 101) %% 86400) * interval '1 minute' AS t) x
    WHERE g %% 5 = 2""",
]

#: Tables whose secondary indexes and unique constraints are dropped for the load and built again
#: after it (one sorted build each instead of millions of random inserts).
_REINDEXED = (
    "members",
    "member_lifecycle",
    "point_entries",
    "point_lots",
    "point_accounts",
    "tier_states",
    "tier_changes",
    "vehicles",
    "ownerships",
    "vehicle_servicings",
    "notifications",
)


def _drop_indexes(conn: psycopg.Connection) -> list[str]:
    """Drop the secondary indexes and unique constraints of ``_REINDEXED``; returns the DDL that
    recreates them."""
    tables = list(_REINDEXED)
    constraints = conn.execute(
        """SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c
           WHERE c.contype = 'u' AND c.conrelid::regclass::text = ANY(%s)""",
        (tables,),
    ).fetchall()
    indexes = conn.execute(
        """SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
           WHERE i.indrelid::regclass::text = ANY(%s) AND NOT i.indisprimary
             AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
        (tables,),
    ).fetchall()
    restore = [f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for table, name, definition in constraints]
    restore += [definition for _name, definition in indexes]
    for table, name, _definition in constraints:
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        conn.execute(f"DROP INDEX {name}")
    return restore


_FINISH_SQL = """
SELECT setval('members_id_seq', (SELECT max(id) FROM members));
SELECT setval('point_entries_id_seq', (SELECT max(id) FROM point_entries));
SELECT setval('point_lots_id_seq', (SELECT max(id) FROM point_lots));
SELECT setval('vehicles_id_seq', (SELECT max(id) FROM vehicles));
"""


def _progress(done: int, total: int, started: float, label: str = "members") -> None:
    elapsed = time.perf_counter() - started
    share = done / total if total else 1
    eta = elapsed / share - elapsed if share else 0
    bar = "#" * int(share * 30)
    sys.stdout.write(
        f"\r  [{bar:<30}] {share:6.1%} {done:,}/{total:,} {label}, {elapsed:5.0f} s, "
        f"{done / elapsed if elapsed else 0:,.0f}/s, ETA {eta:4.0f} s"
    )
    sys.stdout.flush()


def populate(
    total: int, *, dbname: str, chunk: int = CHUNK, today: dt.date | None = None, vacuum: bool = True
) -> float:
    """Generate ``total`` members (see the module docstring) into an empty, migrated ``dbname``;
    returns the seconds taken (VACUUM ANALYZE included)."""
    from app.core.clock import business_today

    today = today or business_today()
    started = time.perf_counter()
    with psycopg.connect(f"{PG} dbname={dbname}", autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET synchronous_commit = off")
        conn.execute(
            f"""INSERT INTO dealers (id, code, name, region, city, active, created_at)
            SELECT d, 'N' || lpad(d::text, 4, '0'), 'Bench dealer ' || d, 'north', 'city', true, now()
            FROM generate_series(1, {DEALERS}) d ON CONFLICT DO NOTHING"""
        )
        conn.execute("SELECT setval('dealers_id_seq', (SELECT max(id) FROM dealers))")
        restore = _drop_indexes(conn)
        for lo in range(1, total + 1, chunk):
            hi = min(total, lo + chunk - 1)
            params = {"lo": lo, "hi": hi, "total": total, "spend_base": 3 * total, "today": today}
            with conn.transaction():
                for statement in _CHUNK_SQL:
                    conn.execute(statement, params)
            _progress(hi, total, started)
        sys.stdout.write("\n")
        index_started = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '512MB'")
        for done, statement in enumerate(restore, 1):
            conn.execute(statement)
            _progress(done, len(restore), index_started, "indexes")
        sys.stdout.write("\n")
        for statement in _FINISH_SQL.split(";"):
            if statement.strip():
                conn.execute(statement)
        if vacuum:
            vacuum_started = time.perf_counter()
            conn.execute("VACUUM ANALYZE")
            print(f"  VACUUM ANALYZE: {time.perf_counter() - vacuum_started:.0f} s", flush=True)
    return time.perf_counter() - started
