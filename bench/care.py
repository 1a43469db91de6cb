"""Care reminders: planning a day over a large base, and sending, each as a ratio against a floor.

1. Planning today's birthday, points-expiring (30 and 7 days) and tier-at-risk reminders over
   1,000,000 members (seeded here: birthdays spread over the year, 2% with points expiring in 30
   days and 2% in 7, the rest later; tier reviews spread over a year, a third of them inactive)
   through ``planning.plan(today, kinds=[...])`` vs ONE raw ``INSERT … SELECT`` writing the same
   rows into a bare copy of ``notifications`` (no indexes, no constraints). Rounds alternate floor
   and ours (the VM's speed drifts). Target: ≤ 2×, and under 60 s.
2. Sending N due reminders through ``notify.send_due`` (claim, consent, quiet hours, render, the
   attempt committed before the call, the outcome after) with the fake service-account gateway vs a
   loop calling that fake gateway directly with the same data and no logic. The fake answers at
   once unless ``--latency-ms`` makes it wait like WeChat does. Target: ≥ 0.8×.
   With ``--dispatchers N`` (and ``--concurrency C``, written to ``care.send_concurrency``), N
   dispatcher processes run ``send_due`` side by side over the same rows, as the issue deploys them;
   the floor is the fake called directly from N × C threads (the same total in flight). With
   ``--lanes 2`` (``care.dispatch_lanes``) each dispatcher checks its next batch while the current
   one's calls are in flight.

Every sending round checks exactly-once: the fakes' journals (of every dispatcher) hold each due
row's openid once and no other, and every row is ``sent`` after one attempt.

Uses its own database (``bench_care``, or ``LOYALTY_BENCH_DB``), dropped and recreated; Redis db
``LOYALTY_BENCH_REDIS_DB`` (see ``bench/common.py``).

    .venv/bin/python bench/care.py [--members 1000000] [--rounds 3] [--dispatch-rows 1000] [--latency-ms 0 50]
        [--dispatchers 2 --concurrency 4] [--lanes 2] [--claim-batch 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH_REDIS_URL, bench_environment, database_url, fresh_database
from bench.seeding import run_sql, scalar, seed_members

#: Its own database, dropped and recreated (``LOYALTY_BENCH_DB`` when several people bench at once).
DB = os.environ.get("LOYALTY_BENCH_DB", "bench_care")
KINDS = ["birthday", "points_expiring", "tier_at_risk"]
EXPIRING_SHARE = 50  # one member in 50 (2%) has points expiring in 30 days, another in 50 in 7 days


def environment() -> dict[str, str]:
    return bench_environment(
        LOYALTY_DATABASE_URL=database_url(DB), LOYALTY_REDIS_URL=BENCH_REDIS_URL, LOYALTY_JOBS_MODE="eager"
    )


def seed(members: int, today: dt.date) -> None:
    """Members with birthdays, an account, one lot each (some expiring in 30 or 7 days), a tier state."""
    from app.core.clock import business_day_start

    seed_members(members, lots_each=1, dbname=DB, birth_month_days=True, enrolled_over_days=5 * 365)

    def noon(days: int) -> str:
        return (business_day_start(today + dt.timedelta(days=days)) + dt.timedelta(hours=12)).isoformat()

    run_sql(
        f"""
        UPDATE point_lots SET expires_at = CASE
            WHEN member_id % {EXPIRING_SHARE} = 0 THEN '{noon(30)}'::timestamptz
            WHEN member_id % {EXPIRING_SHARE} = 1 THEN '{noon(7)}'::timestamptz
            ELSE '{noon(60)}'::timestamptz + (member_id % 700) * interval '1 day' END;
        INSERT INTO tier_states (member_id, tier, achieved_at, review_on, last_qualifying_at, updated_at)
        SELECT id, 'gold', now() - interval '200 days', date '{today.isoformat()}' + (id % 365)::int,
               CASE WHEN id % 3 = 0 THEN now() - interval '500 days' ELSE now() - interval '10 days' END, now()
        FROM members;
        CREATE TABLE notifications_floor (LIKE notifications INCLUDING DEFAULTS);
        VACUUM ANALYZE;
        """,
        DB,
    )


def floor_sql(today: dt.date) -> tuple[str, dict]:
    """The same rows the three planners write, as one INSERT … SELECT with the rules in SQL."""
    from app.care import rules
    from app.core.clock import business_day_start
    from app.tiers import policy

    due = rules.reminder_time(today)
    review_on = today + dt.timedelta(days=policy.AT_RISK_DAYS.value())
    params: dict = {
        "due": due,
        "month_days": rules.birthday_month_days(today),
        "review_on": review_on,
        "inactive_since": policy._inactive_since(review_on),
        "year": str(today.year),
        "tier_period": review_on.isoformat(),
    }
    expiring = []
    for days in (30, 7):
        last_day = today + dt.timedelta(days=days)
        params[f"start{days}"] = business_day_start(last_day)
        params[f"end{days}"] = business_day_start(last_day + dt.timedelta(days=1))
        params[f"period{days}"] = f"{last_day.isoformat()}:{days}d"
        expiring.append(f"""
            SELECT member_id, 'points_expiring', 'points_expiring:' || member_id || ':' || %(period{days})s,
                   %(period{days})s
            FROM point_lots
            WHERE status = 'available' AND remaining > 0 AND expires_at > %(start{days})s
              AND expires_at <= %(end{days})s
            GROUP BY member_id""")
    statement = f"""
        INSERT INTO notifications_floor (member_id, kind, channel, dedupe_key, period, status, payload, attempts,
                                         created_at, due_at)
        SELECT member_id, kind, 'official_template', key, period, 'planned', '{{}}'::jsonb, 0, now(), %(due)s
        FROM (
            SELECT id AS member_id, 'birthday' AS kind, 'birthday:' || id || ':' || %(year)s AS key,
                   %(year)s AS period
            FROM members WHERE status = 'active' AND birth_month_day = ANY(%(month_days)s)
            UNION ALL {" UNION ALL ".join(expiring)}
            UNION ALL
            SELECT t.member_id, 'tier_at_risk', 'tier_at_risk:' || t.member_id || ':' || %(tier_period)s,
                   %(tier_period)s
            FROM tier_states t
            WHERE t.review_on = %(review_on)s
              AND (t.last_qualifying_at IS NULL OR t.last_qualifying_at < %(inactive_since)s)
        ) rows"""
    return statement, params


def time_floor(app, today: dt.date, table: str = "notifications_floor") -> tuple[float, int]:
    """The raw INSERT … SELECT into ``table``: the bare copy, or ``notifications`` itself (its
    indexes and foreign key, without ON CONFLICT), to tell the table's cost from the planners'."""
    run_sql(f"TRUNCATE {table}; CHECKPOINT", DB)
    with app.app_context():
        statement, params = floor_sql(today)
    started = time.perf_counter()
    run_sql(statement.replace("INTO notifications_floor", f"INTO {table}"), DB, params)
    elapsed = time.perf_counter() - started
    return elapsed, scalar(f"SELECT count(*) FROM {table}", DB)


def time_planners(app, today: dt.date) -> tuple[float, dict[str, float], int]:
    """Whole run and per kind (each kind's flush included), one commit at the end like the job."""
    from app.care import planning
    from app.core.db import db

    run_sql("TRUNCATE notifications; CHECKPOINT", DB)
    per_kind: dict[str, float] = {}
    rows = 0
    with app.app_context():
        started = time.perf_counter()
        for kind in KINDS:
            kind_started = time.perf_counter()
            (planned,) = planning.plan(today, kinds=[kind])
            per_kind[kind] = time.perf_counter() - kind_started
            rows += planned.rows
        db.session.commit()
        elapsed = time.perf_counter() - started
        db.session.remove()
    return elapsed, per_kind, rows


def same_rows() -> bool:
    """Ours and the floor wrote the same (member, kind, dedupe key, period, due) rows."""
    differing = scalar(
        """
        SELECT count(*) FROM (
            (SELECT member_id, kind, dedupe_key, period, due_at FROM notifications
             EXCEPT SELECT member_id, kind, dedupe_key, period, due_at FROM notifications_floor)
            UNION ALL
            (SELECT member_id, kind, dedupe_key, period, due_at FROM notifications_floor
             EXCEPT SELECT member_id, kind, dedupe_key, period, due_at FROM notifications)) d""",
        DB,
    )
    return differing == 0


# --- 2. sending -------------------------------------------------------------------------------


def make_reachable(app, rows: int) -> None:
    """``rows`` planned 7-day expiry reminders made due now, for members who consented to service
    messages and follow the service account; every other row is pushed a year out. Quiet hours are
    moved away from the current hour (the bench may run at night in Shanghai)."""
    from app.config import current_settings
    from app.core import tunables
    from app.core.clock import to_business, utcnow
    from app.core.db import db

    with app.app_context():
        app_id = current_settings().WECHAT_APP_ID
        quiet_start = to_business(utcnow() + dt.timedelta(hours=2))
        quiet = {"start": quiet_start.strftime("%H:00"), "end": quiet_start.strftime("%H:30")}
        tunables.set_value("care.quiet_hours", quiet, actor=("cli", "bench"), reason="bench runs at any hour")
        db.session.commit()
        db.session.remove()
    run_sql(
        f"""
        UPDATE notifications SET due_at = now() + interval '1 year';
        DROP TABLE IF EXISTS bench_dispatch;
        CREATE TABLE bench_dispatch AS
            SELECT id, member_id FROM notifications WHERE kind = 'points_expiring' AND right(period, 3) = ':7d'
            ORDER BY id LIMIT {rows};
        INSERT INTO consents (member_id, purpose, granted, policy_version, channel, recorded_at)
        SELECT member_id, purpose, true, 'bench', 'import', now()
        FROM bench_dispatch, unnest(ARRAY['privacy_policy', 'service_notifications']) purpose
        WHERE NOT EXISTS (SELECT FROM consents c WHERE c.member_id = bench_dispatch.member_id);
        INSERT INTO wechat_identities (member_id, app_kind, app_id, openid, following, followed_at, created_at)
        SELECT member_id, 'official', %(app_id)s, 'bench-openid-' || member_id, true, now(), now() FROM bench_dispatch
        ON CONFLICT DO NOTHING;
        ANALYZE
        """,
        DB,
        {"app_id": app_id},
    )


def reset_dispatch_rows() -> None:
    run_sql(
        """
        UPDATE notifications SET status = 'planned', channel = 'official_template', attempts = 0, claimed_at = NULL,
               attempted_at = NULL, sent_at = NULL, finished_at = NULL, openid = NULL, wechat_msgid = NULL,
               error = NULL, due_at = now() - interval '1 minute'
        WHERE id IN (SELECT id FROM bench_dispatch);
        VACUUM ANALYZE notifications
        """,
        DB,
    )


def slow_fake(latency: float):
    """The fake service account, answering after ``latency`` seconds like a WeChat round trip."""
    from app.gateways.fakes import FakeOfficialAccount

    class SlowFakeOfficialAccount(FakeOfficialAccount):
        def send_template(self, openid, template_id, data, *, url=None) -> int:
            if latency:
                time.sleep(latency)
            return super().send_template(openid, template_id, data, url=url)

    return SlowFakeOfficialAccount()


def install_fakes(app, official) -> None:
    from app import gateways
    from app.gateways.fakes import FakeMiniApp, FakePayments

    gateways.install(app, gateways.Gateways(official_account=official, mini_app=FakeMiniApp(), payments=FakePayments()))


def time_dispatch(app, rows: int, latency: float) -> tuple[float, dict[str, int]]:
    from app.care import notify

    reset_dispatch_rows()
    official = slow_fake(latency)
    install_fakes(app, official)
    with app.app_context():
        started = time.perf_counter()
        handled = notify.send_due()
        elapsed = time.perf_counter() - started
        from app.core.db import db

        db.session.remove()
    assert handled == rows, f"handled {handled} of {rows}"
    return elapsed, sent_exactly_once([message["touser"] for message in official.templates()], rows)


def sent_exactly_once(openids: list[str], rows: int) -> dict[str, int]:
    """The journals against the rows: each due row's member messaged once, nobody twice, no one
    else; every row ``sent`` after exactly one attempt. Returns the rows' statuses."""
    expected = {f"bench-openid-{member_id}" for (member_id,) in _rows("SELECT member_id FROM bench_dispatch")}
    twice = [openid for openid, count in Counter(openids).items() if count > 1]
    assert not twice, f"{len(twice)} members messaged more than once, e.g. {twice[:3]}"
    assert set(openids) == expected and len(expected) == rows, (
        f"{len(expected - set(openids))} rows never sent, {len(set(openids) - expected)} unexpected messages"
    )
    statuses = dict(
        _rows(
            "SELECT status || CASE WHEN attempts = 1 THEN '' ELSE ' after ' || attempts || ' attempts' END, count(*)"
            " FROM notifications WHERE id IN (SELECT id FROM bench_dispatch) GROUP BY 1"
        )
    )
    assert statuses == {"sent": rows}, f"statuses {statuses}"
    return statuses


def _dispatcher(latency: float, start, results) -> None:
    """One dispatcher process: its own app, session and slow fake; waits at ``start`` so that the
    start-up is not timed, then sends until nothing is due and reports its journal."""
    import sqlalchemy as sa

    from app import create_app
    from app.care import notify
    from app.core.db import db

    app = create_app()
    official = slow_fake(latency)
    install_fakes(app, official)
    with app.app_context():
        db.session.execute(sa.text("SELECT 1"))  # connected before the clock starts
        db.session.remove()
        start.wait()
        handled = notify.send_due()
        db.session.remove()
    results.put((handled, [message["touser"] for message in official.templates()]))


def time_dispatchers(rows: int, latency: float, dispatchers: int) -> tuple[float, dict[str, int]]:
    """``dispatchers`` processes running ``send_due`` side by side over the same due rows; the time
    from their common start to the last one's report."""
    reset_dispatch_rows()
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(dispatchers + 1), context.Queue()
    processes = [context.Process(target=_dispatcher, args=(latency, start, results)) for _ in range(dispatchers)]
    for process in processes:
        process.start()
    start.wait()
    started = time.perf_counter()
    reports = [results.get(timeout=600) for _ in processes]
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join()
        assert process.exitcode == 0, f"a dispatcher exited with {process.exitcode}"
    handled = sum(report[0] for report in reports)
    assert handled == rows, f"handled {handled} of {rows}"
    return elapsed, sent_exactly_once([openid for report in reports for openid in report[1]], rows)


def _rows(query: str) -> list[tuple]:
    import psycopg

    from bench.seeding import PG

    with psycopg.connect(f"{PG} dbname={DB}") as conn:
        return conn.execute(query).fetchall()


def time_direct_calls(app, rows: int, latency: float, width: int) -> float:
    """The floor: the same number of template sends straight to the fake, one rendered message
    reused, from ``width`` threads at once (the dispatcher's own concurrency)."""
    from app.care import rendering
    from app.care.models import Notification
    from app.core.db import db

    official = slow_fake(latency)
    with app.app_context():
        sample = db.session.get(Notification, scalar("SELECT min(id) FROM bench_dispatch", DB))
        data = rendering.template_data(sample)
        db.session.remove()

    def send(index: int) -> int:
        return official.send_template(f"bench-openid-{index}", "points-expiring-template", data)

    started = time.perf_counter()
    with ThreadPoolExecutor(width) as pool:
        list(pool.map(send, range(rows)))
    return time.perf_counter() - started


def dispatch_width(app) -> int:
    from app.care import notify

    with app.app_context():
        return int(notify.CONCURRENCY.value())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating floor / planners rounds")
    parser.add_argument("--dispatch-rows", type=int, default=1000)
    parser.add_argument(
        "--latency-ms", type=float, nargs="*", default=[0.0, 50.0, 200.0], help="fake gateway latencies"
    )
    parser.add_argument("--dispatchers", type=int, default=1, help="dispatcher processes side by side")
    parser.add_argument("--concurrency", type=int, help="care.send_concurrency for this run (each dispatcher's)")
    parser.add_argument("--claim-batch", type=int, help="care.claim_batch for this run")
    parser.add_argument("--lanes", type=int, help="care.dispatch_lanes for this run (batches per dispatcher at once)")
    parser.add_argument("--skip-planning", action="store_true", help="only the sending part (with --reuse)")
    parser.add_argument("--reuse", action="store_true", help="keep the seeded database of the last run")
    parser.add_argument("--seed-only", action="store_true", help="seed the database and stop (reuse it later)")
    args = parser.parse_args()
    env = environment()
    os.environ.update(env)
    from app import create_app
    from app.core.clock import business_today

    today = business_today()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    if not args.reuse:
        print(f"seeding {args.members:,} members into {DB} ...", flush=True)
        started = time.perf_counter()
        fresh_database(env, DB)
        seed(args.members, today)
        print(f"  seeded in {time.perf_counter() - started:.0f} s", flush=True)
    if args.seed_only:
        return
    app = create_app()

    if not args.skip_planning:
        plan_rounds(app, today, args)
    send_rounds(app, args)
    print(f"load average at end: {os.getloadavg()}")


def plan_rounds(app, today: dt.date, args: argparse.Namespace) -> None:
    print(f"\nplanning {', '.join(KINDS)} for {today} over {args.members:,} members, {args.rounds} rounds", flush=True)
    floors, table_floors, ours = [], [], []
    for round_number in range(args.rounds):
        table_seconds, _ = time_floor(app, today, "notifications")
        floor_seconds, floor_rows = time_floor(app, today)
        our_seconds, per_kind, our_rows = time_planners(app, today)
        floors.append(floor_seconds)
        table_floors.append(table_seconds)
        ours.append(our_seconds)
        split = ", ".join(f"{kind} {seconds:.2f}" for kind, seconds in per_kind.items())
        print(
            f"  round {round_number + 1}: raw INSERT … SELECT into a bare copy {floor_seconds:6.2f} s"
            f" ({floor_rows} rows), into notifications {table_seconds:6.2f} s;"
            f" planners {our_seconds:6.2f} s ({our_rows} rows: {split});"
            f" ratio {our_seconds / floor_seconds:.2f} (bare) {our_seconds / table_seconds:.2f} (same table)",
            flush=True,
        )
        assert floor_rows == our_rows and same_rows(), "the floor and the planners wrote different rows"
    floor_median, table_median, our_median = (statistics.median(x) for x in (floors, table_floors, ours))
    print(f"  raw INSERT … SELECT into a bare copy (median):        {floor_median:8.2f} s")
    print(f"  raw INSERT … SELECT into notifications (median):      {table_median:8.2f} s")
    print(f"  planners (median):                                   {our_median:8.2f} s   (target < 60 s)")
    print(f"planners / raw INSERT … SELECT into the same table: {our_median / table_median:.2f}")
    print(
        f"planners / raw INSERT … SELECT into a bare copy time ratio: {our_median / floor_median:.2f}   (target <= 2)"
    )
    print(f"load average after planning: {os.getloadavg()}", flush=True)


def send_rounds(app, args: argparse.Namespace) -> None:
    make_reachable(app, args.dispatch_rows)
    with run_settings(app, args):
        per_dispatcher = dispatch_width(app)
        with app.app_context():
            from app.care import notify

            lane_count = int(notify.LANES.value())
        width = per_dispatcher * args.dispatchers
        ours_name = "notify.send_due" if args.dispatchers == 1 else f"{args.dispatchers} × notify.send_due"
        for latency_ms in args.latency_ms:
            latency = latency_ms / 1000
            print(
                f"\nsending {args.dispatch_rows} due reminders, fake gateway answering in {latency_ms:g} ms,"
                f" {args.dispatchers} dispatcher(s) × {per_dispatcher} in flight (care.send_concurrency),"
                f" {lane_count} lane(s) each,"
                f" {args.rounds} alternating rounds",
                flush=True,
            )
            ratios = []
            for round_number in range(args.rounds):
                direct = time_direct_calls(app, args.dispatch_rows, latency, width)
                if args.dispatchers == 1:
                    ours_seconds, statuses = time_dispatch(app, args.dispatch_rows, latency)
                else:
                    ours_seconds, statuses = time_dispatchers(args.dispatch_rows, latency, args.dispatchers)
                direct_rate, our_rate = args.dispatch_rows / direct, args.dispatch_rows / ours_seconds
                ratios.append(our_rate / direct_rate)
                print(
                    f"  round {round_number + 1}: fake called directly from {width} threads"
                    f" {direct_rate:9.1f} sends/s; {ours_name} {our_rate:9.1f} sends/s {statuses}, each once;"
                    f" our cost per message {(ours_seconds - direct) / args.dispatch_rows * 1000:6.2f} ms;"
                    f" ratio {our_rate / direct_rate:.2f}",
                    flush=True,
                )
            print(f"{ours_name} / direct calls rate ratio (median): {statistics.median(ratios):.2f}   (target >= 0.8)")


@contextmanager
def run_settings(app, args: argparse.Namespace) -> Iterator[None]:
    """``--concurrency``, ``--claim-batch`` and ``--lanes`` as program settings for the run, put back after."""
    from app.core import tunables
    from app.core.db import db

    wanted = {
        "care.send_concurrency": args.concurrency,
        "care.claim_batch": args.claim_batch,
        "care.dispatch_lanes": args.lanes,
    }
    wanted = {key: value for key, value in wanted.items() if value is not None}

    def apply(values: dict) -> None:
        with app.app_context():
            for key, value in values.items():
                tunables.set_value(key, value, actor=("cli", "bench"), reason="bench/care.py run")
            db.session.commit()
            db.session.remove()
        tunables.forget_shared_snapshot()

    with app.app_context():
        before = {key: tunables.get(key) for key in wanted}
    apply(wanted)
    try:
        yield
    finally:
        apply(before)


if __name__ == "__main__":
    main()
