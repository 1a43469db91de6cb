"""The operator dashboard over 1,000,000 members, against a ``SELECT 1`` console page.

The bench seeds its own database (``LOYALTY_BENCH_DB``, default ``loyalty_bench_dash``) set-based:
200 dealers, 2,000 advisors with monthly targets, 1,000,000 members enrolled over the last year
(60% pre-enrolled buyers, most activated), ~1.9 million ledger entries, 240,000 tier changes,
1,000,000 notifications, 100,000 referrals, bookings and red packets, 20,000 complaints. It then
fills the rollups with the real backfill (``flask dashboard rollup`` for the whole year, timed)
and, in one process on the same Flask stack (the test client: session cookie, CSRF'd sign-in,
the console's before-request hooks, templates), alternates rounds of

* floor: ``GET /console/bench/select-1``, a console page for the same signed-in operator that runs
  ``SELECT 1`` and renders the console layout, and
* ours: ``GET /console/dashboard`` (every chart, the default 30 days; then a whole year), and the
  14 CSV exports,

printing each round's medians and ratio, then p50/p95 overall, for an HQ operator and a dealer
manager.

    python bench/dashboard.py [--members 1000000] [--rounds 5] [--requests 20] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB = os.environ.get("LOYALTY_BENCH_DB", "loyalty_bench_dash")
REDIS_DB = int(os.environ.get("LOYALTY_BENCH_REDIS_DB", "40"))
DB_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DB}"
os.environ.update(
    LOYALTY_ENV="development",
    LOYALTY_DATABASE_URL=DB_URL,
    LOYALTY_REDIS_URL=f"redis://127.0.0.1:6379/{REDIS_DB}",
    LOYALTY_JOBS_MODE="eager",
    LOYALTY_LOG_LEVEL="WARNING",
)

from bench.seeding import run_sql, scalar  # noqa: E402

PASSWORD = "bench-password-1"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def fresh_database() -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True)


def seed(members: int) -> None:
    """Everything set-based; dealers 1..200 and advisors 1..2000 (ten a dealer) in a fresh database."""
    started = time.perf_counter()
    run_sql(
        f"""
        INSERT INTO dealers (code, name, region, city, active, created_at)
        SELECT 'B' || lpad(g::text, 4, '0'), 'Bench dealer ' || g, 'north', 'city', true, now()
        FROM generate_series(1, 200) g;
        INSERT INTO staff (dealer_id, staff_code, name, role, monthly_enrollment_target, active, created_at)
        SELECT 1 + (s - 1) / 10, 'S' || lpad(s::text, 5, '0'), 'Advisor ' || s, 'sales_advisor', 40, true, now()
        FROM generate_series(1, 2000) s;
        INSERT INTO enrollment_targets (month, dealer_id, staff_id, target, updated_at)
        SELECT date_trunc('month', now() - m * interval '1 month')::date, d, NULL, 400, now()
        FROM generate_series(0, 12) m, generate_series(1, 200) d;
        INSERT INTO enrollment_targets (month, dealer_id, staff_id, target, updated_at)
        SELECT date_trunc('month', now() - m * interval '1 month')::date, 1 + (s - 1) / 10, s, 40, now()
        FROM generate_series(0, 12) m, generate_series(1, 2000) s;
        INSERT INTO members (member_no, status, enrollment_channel, locale, customer_type, lifecycle_stage,
                             enrolling_dealer_id, enrolling_staff_id, enrolled_at, activated_at, created_at, updated_at)
        SELECT '6' || lpad(g::text, 10, '0'),
               CASE WHEN g % 10 < 6 AND g % 7 = 0 THEN 'pre_enrolled' ELSE 'active' END,
               CASE WHEN g % 10 < 6 THEN 'purchase' ELSE 'miniapp' END, 'zh_CN', 'private', 'new',
               1 + g % 200,
               CASE WHEN g % 5 = 0 THEN NULL ELSE (g % 200) * 10 + (g / 200) % 10 + 1 END,
               t.at,
               CASE WHEN g % 10 < 6 AND g % 7 = 0 THEN NULL ELSE least(t.at + (g % 4) * interval '1 day', now()) END,
               t.at, t.at
        FROM generate_series(1, {members}) g
        CROSS JOIN LATERAL (SELECT now() - ({members} - g) * interval '365 days' / {members} AS at) t;
        ANALYZE members;
        INSERT INTO point_entries (member_id, currency, kind, points, idempotency_key, source_type, funder,
                                   occurred_at, created_at)
        SELECT id, 'reward', 'earn', 1000 + (id % 5) * 500, 'b:earn:' || id, 'vehicle.delivered', 'oem',
               enrolled_at + interval '1 hour', enrolled_at + interval '1 hour'
        FROM members;
        INSERT INTO point_entries (member_id, currency, kind, points, idempotency_key, source_type, funder,
                                   occurred_at, created_at)
        SELECT id, 'reward', 'spend', -300, 'b:spend:' || id, 'redemption', 'oem',
               enrolled_at + interval '10 days', enrolled_at + interval '10 days'
        FROM members WHERE id % 3 = 0 AND enrolled_at + interval '10 days' < now();
        INSERT INTO point_entries (member_id, currency, kind, points, idempotency_key, source_type, funder,
                                   occurred_at, created_at)
        SELECT id, 'reward', CASE WHEN id % 40 = 0 THEN 'expire' ELSE 'adjust' END,
               CASE WHEN id % 40 = 0 THEN -100 ELSE 200 END, 'b:more:' || id, 'bench', 'oem',
               enrolled_at + interval '5 days', enrolled_at + interval '5 days'
        FROM members WHERE id % 20 = 0 AND enrolled_at + interval '5 days' < now();
        INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, tier_points, changed_at)
        SELECT id, 'silver', 'gold', 'upgrade', 20000, enrolled_at + interval '20 days'
        FROM members WHERE id % 5 = 0 AND enrolled_at + interval '20 days' < now();
        INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, tier_points, changed_at)
        SELECT id, 'gold', 'platinum', 'upgrade', 60000, enrolled_at + interval '40 days'
        FROM members WHERE id % 25 = 0 AND enrolled_at + interval '40 days' < now();
        INSERT INTO notifications (member_id, kind, channel, dedupe_key, status, payload, attempts, created_at, due_at)
        SELECT id, (ARRAY['tier_upgrade', 'points_expiring', 'service_reminder', 'birthday'])[1 + id % 4],
               (ARRAY['official_template', 'miniapp_subscribe', 'sms'])[1 + id % 3], 'b:' || id,
               (ARRAY['delivered', 'delivered', 'delivered', 'sent', 'failed', 'skipped', 'sent'])[1 + id % 7],
               '{{}}'::jsonb, 1, enrolled_at + interval '2 hours', enrolled_at + interval '2 hours'
        FROM members;
        INSERT INTO complaints (member_id, category, status, description, created_by, created_at, updated_at)
        SELECT id, (ARRAY['points_missing', 'points_expired', 'tier', 'benefit', 'redemption', 'service_quality',
                          'sales', 'notification', 'app_problem', 'privacy', 'red_packet', 'other']
               )[1 + (id / 50) % 12],
               'open', 'bench', 'bench', enrolled_at + interval '3 hours', enrolled_at + interval '3 hours'
        FROM members WHERE id % 50 = 0;
        INSERT INTO referrals (referrer_member_id, referee_member_id, code, dealer_id, milestone, reward_status,
                               review, flags, attributed_at, expires_at, test_drive_at, ordered_at, delivered_at,
                               reward_points, clawed_back_points, created_at, updated_at)
        SELECT id - 1, id, 'C' || id, enrolling_dealer_id, 'lead', 'none', 'none', '[]'::jsonb, enrolled_at,
               enrolled_at + interval '180 days',
               CASE WHEN id % 100 < 45 THEN enrolled_at + interval '3 days' END,
               CASE WHEN id % 100 < 25 THEN enrolled_at + interval '10 days' END,
               CASE WHEN id % 100 < 20 THEN enrolled_at + interval '30 days' END, 0, 0, enrolled_at, enrolled_at
        FROM members WHERE id % 10 = 1 AND id > 1;
        INSERT INTO campaigns (code, name, status, budget_fen, amount_fen, starts_at, ends_at, channels,
                               committed_fen, refunded_fen, send_name, wishing, act_name, remark, dealer_id, created_at)
        SELECT 'BC' || c, 'Bench campaign ' || c, 'active', 10000000, 888, now() - interval '1 year',
               now() + interval '1 month', '["official"]'::jsonb, 0, 0, 'bench', 'w', 'a', 'r',
               CASE WHEN c % 2 = 0 THEN c END, now()
        FROM generate_series(1, 20) c;
        INSERT INTO red_packet_grants (campaign_id, member_id, openid, amount_fen, business_date, status, attempts,
                                       created_at, sent_at)
        SELECT 1 + id % 20, id, 'o' || id, 888, (enrolled_at AT TIME ZONE 'Asia/Shanghai')::date,
               CASE WHEN id % 3 = 0 THEN 'sent' ELSE 'received' END, 1, enrolled_at, enrolled_at + interval '1 minute'
        FROM members WHERE id % 10 = 2
        """,
        DB,
    )
    _seed_bookings()
    run_sql("VACUUM ANALYZE", DB)
    print(f"seeded {scalar('SELECT count(*) FROM members', DB):,} members in {time.perf_counter() - started:.0f} s")


def _seed_bookings() -> None:
    """The benefit catalog through its service, then 100,000 delivered bookings set-based."""
    from app import create_app
    from app.benefits import catalog
    from app.core.db import db

    with create_app().app_context():
        catalog.seed_defaults(actor="bench")
        db.session.commit()
    run_sql(
        """
        INSERT INTO bookings (member_id, request_id, benefit_id, benefit_code, dealer_id, status, paid_with,
                              points_spent, year_start, cost_fen, funder, created_at, delivered_at, rating, rated_at)
        SELECT m.id, 'b' || m.id, b.id, b.code, m.enrolling_dealer_id, 'delivered', 'quota', 0,
               date_trunc('year', m.enrolled_at)::date, 0, 'oem', m.enrolled_at, m.enrolled_at + interval '4 days',
               CASE WHEN m.id % 10 < 7 THEN 1 + m.id % 5 END,
               CASE WHEN m.id % 10 < 7 THEN m.enrolled_at + interval '5 days' END
        FROM members m
        JOIN LATERAL (SELECT id, code FROM benefits
                      WHERE catalog_id = (SELECT id FROM benefit_catalogs WHERE status = 'published' LIMIT 1)
                      ORDER BY id OFFSET m.id % 5 LIMIT 1) b ON true
        WHERE m.id % 10 = 3 AND m.enrolled_at + interval '5 days' < now()
        """,
        DB,
    )


def backfill() -> float:
    """The real rollup over the whole year, as ``flask dashboard rollup`` runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "dashboard", "rollup", "--days", "366"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - started
    print(f"rollup backfill of 366 days: {seconds:.1f} s, {scalar('SELECT count(*) FROM daily_metrics', DB):,} rows")
    return seconds


def _add_floor_page() -> None:
    """One more console page, ``SELECT 1`` for the signed-in operator in the console layout; added
    to the console blueprint before any app registers it."""
    import sqlalchemy as sa
    from flask import render_template

    from app.console.session import console_view
    from app.console.views import bp
    from app.core.db import db

    @bp.route("/bench/select-1")
    @console_view("operator", "dealer_manager", scope="operator")
    def bench_select_one() -> str:
        value = db.session.scalar(sa.text("SELECT 1"))
        return render_template("console/error.html", message=str(value))


def _app():
    import sqlalchemy as sa

    from app import create_app
    from app.core.db import db
    from app.operators import auth

    app = create_app()
    with app.app_context():
        for username, role, dealer_id in (("bench-hq", "operator", None), ("bench-mgr", "dealer_manager", 1)):
            if db.session.scalar(sa.text("SELECT 1 FROM operators WHERE username = :u"), {"u": username}) is None:
                auth.create_operator(username, name=username, role=role, password=PASSWORD, dealer_id=dealer_id)
        db.session.commit()
    return app


def _signed_in(app, username: str):
    client = app.test_client()
    token = _CSRF.search(client.get("/console/sign-in").get_data(as_text=True)).group(1)
    response = client.post("/console/sign-in", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client


def _time(client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, (path, response.status_code)
    return elapsed * 1000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(app, username: str, rounds: int, requests: int) -> None:
    from app.core.clock import business_today
    from app.reporting.dashboard import CHARTS

    client = _signed_in(app, username)
    year = f"/console/dashboard?from={business_today() - dt.timedelta(days=365)}&to={business_today()}"
    pages = {
        "floor: SELECT 1 page": "/console/bench/select-1",
        "dashboard, 30 days": "/console/dashboard",
        "dashboard, 366 days": year,
    }
    for path in pages.values():  # warm: templates compiled, connections open, catalogs loaded
        _time(client, path)
    times: dict[str, list[float]] = {label: [] for label in pages}
    times["14 CSVs, 30 days (each)"] = []
    print(f"\n{username}: {rounds} rounds of {requests} requests per page, alternating floor and ours")
    for round_no in range(rounds):
        order = list(pages.items()) if round_no % 2 == 0 else list(reversed(pages.items()))
        medians = {}
        for label, path in order:
            batch = [_time(client, path) for _ in range(requests)]
            times[label].extend(batch)
            medians[label] = statistics.median(batch)
        csvs = [_time(client, f"/console/dashboard/{name}.csv") for name in CHARTS]
        times["14 CSVs, 30 days (each)"].extend(csvs)
        floor = medians["floor: SELECT 1 page"]
        print(
            f"  round {round_no + 1}: floor {floor:.1f} ms, dashboard 30 d {medians['dashboard, 30 days']:.1f} ms "
            f"({medians['dashboard, 30 days'] / floor:.1f}×), 366 d {medians['dashboard, 366 days']:.1f} ms "
            f"({medians['dashboard, 366 days'] / floor:.1f}×), CSV median {statistics.median(csvs):.1f} ms"
        )
    floor = statistics.median(times["floor: SELECT 1 page"])
    for label, values in times.items():
        p50 = statistics.median(values)
        print(f"  {label:<26} p50 {p50:7.1f} ms  p95 {_pct(values, 0.95):7.1f} ms  ratio {p50 / floor:5.1f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="reuse the seeded database and rollups")
    args = parser.parse_args()
    _add_floor_page()
    if not args.keep:
        fresh_database()
        seed(args.members)
        backfill()
    app = _app()
    for username in ("bench-hq", "bench-mgr"):
        measure(app, username, args.rounds, args.requests)
    print(f"\nload: {os.getloadavg()}")


if __name__ == "__main__":
    main()
