"""Filling ``daily_metrics``: set-based and idempotent, a window of business days at a time.

``roll(first, last)`` deletes the window's rows and recomputes them from the source tables in
one transaction, under a transaction-level advisory lock (two runs at once queue instead of
colliding): running it twice gives the same rows, and a late event (a purchase that arrives
today but happened yesterday, a notification delivered after it was rolled) is counted when its
day is rolled again. The hourly job rolls yesterday and today; the nightly one re-rolls the last
``dashboard.reroll_days`` days, so cohort figures (a pre-enrolled buyer who activates next week,
a referral that reaches its order) and status changes settle. ``flask dashboard rollup --from
--to`` backfills history.

What each metric counts (day = Asia/Shanghai business day; dealer = the member's enrolling dealer
unless said otherwise; merged members are never counted, closed ones not in the stocks):

* ``new_members`` members enrolled that day; ``new_members_advisor`` (key: the enrolling advisor's
  staff id) those an advisor enrolled.
* ``preenrolled`` / ``preenrolled_activated``: buyers pre-enrolled from a DMS purchase that day,
  and how many of that cohort have activated since.
* ``members_total``: members at the end of the day (a stock: every day before plus that day).
* ``active_30d``: members with a points movement other than expiry in the 30 days ending that day.
* ``tier_mix`` (key: tier) members per tier at the end of the day, from the tier history.
* ``points`` (key: entry kind and sign, e.g. ``earn+``, ``spend-``) reward points moved that day;
  ``points_balance``: reward points outstanding at the end of the day (the liability, a stock).
* ``red_packet_fen`` (key: campaign id; dealer: the campaign's) red packets sent that day, in fen.
* ``benefit_used`` / ``benefit_ratings`` / ``benefit_rating_sum`` (key: benefit code; dealer: the
  booking's) benefits delivered, and ratings given, that day.
* ``referrals`` (key: stage reached: lead, test_drive, order, delivery; dealer: the referral's)
  referrals attributed that day that reached the stage since (as ``referrals/funnel.py`` counts).
* ``notifications`` (key: ``kind|channel|status``) notifications created that day.
* ``complaints`` (key: category) complaints logged that day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from app.core import tunables
from app.core.clock import business_day_start, business_today
from app.core.db import db
from app.core.errors import ValidationFailed
from app.core.i18n import _
from app.jobs import job
from app.reporting.models import ALL_DEALERS, MONTHLY_SUFFIX, DailyMetric

REROLL_DAYS = tunables.define(
    "dashboard.reroll_days", 35, "Days the nightly dashboard rollup recomputes (late activations, milestones)"
)
#: At most this many days per backfill statement group (keeps each transaction's work bounded).
CHUNK_DAYS = 31
MAX_BACKFILL_DAYS = 3 * 366
_LOCK = "hashtext('loyalty.dashboard.rollup')"
#: The few expressions PostgreSQL and SQLite (``make run``) spell differently; everything else in
#: the statements below is common SQL. Business days are Asia/Shanghai (UTC+8, no summer time);
#: on SQLite timestamps are stored as naive UTC text, which ``date(…, '+8 hours')`` turns into days.
_DIALECTS = {
    "postgresql": {
        "day": "(({col}) AT TIME ZONE 'Asia/Shanghai')::date",
        # local midnight ending business day ``d`` (the instant the next day starts)
        "end_of": "((({d}) + 1)::timestamp AT TIME ZONE 'Asia/Shanghai')",
        "days": "SELECT generate_series(CAST(:d0 AS date), CAST(:d1 AS date), interval '1 day')::date AS day",
        "day_before_window": "CAST(:d0 AS date) - 1",
        "days_before": "({d}) - {n}",
        "days_after": "({d}) + {n}",
        "greatest": "greatest",
        "least": "least",
        "month_of": "CAST(date_trunc('month', {d}) AS date)",
    },
    "sqlite": {
        "day": "date({col}, '+8 hours')",
        "end_of": "datetime({d}, '+1 day', '-8 hours')",
        "days": "WITH RECURSIVE s(day) AS (SELECT date(:d0) UNION ALL SELECT date(day, '+1 day') FROM s "
        "WHERE day < date(:d1)) SELECT day FROM s",
        "day_before_window": "date(:d0, '-1 day')",
        "days_before": "date({d}, '-{n} days')",
        "days_after": "date({d}, '+{n} days')",
        "greatest": "max",  # SQLite's scalar max/min of several arguments
        "least": "min",
        "month_of": "date({d}, 'start of month')",
    },
}
_SQL = _DIALECTS["postgresql"]  # the dialect ``_statements`` is spelling for
_COUNTED = "m.status <> 'merged'"
_IN_STOCK = "m.status NOT IN ('merged', 'closed')"
_INSERT = "INSERT INTO daily_metrics (metric, day, dealer_id, key, value) "


def _day(column: str) -> str:
    return _SQL["day"].format(col=column)


def _plus(day: str, days: int) -> str:
    return _SQL["days_after"].format(d=day, n=days)


def _stock(metric: str, *, source: str, ts: str, dealer: str, value: str, where: str) -> str:
    """A stock at the end of each day: everything before the window plus the window's running sum.

    No join: one pass over the source up to the window's end gives the opening balance (the rows
    before the window, dated the day before it) and the window's daily flows; those and a zero for
    every day and dealer are summed per day and dealer, then summed up running per dealer.
    """
    return (
        _INSERT
        + f"""
WITH flow AS (SELECT CASE WHEN {ts} < :t0 THEN {_SQL["day_before_window"]} ELSE {_day(ts)} END AS day,
                     {dealer} AS dealer, {value} AS n FROM {source}
              WHERE {where} AND {ts} < :t1 GROUP BY 1, 2),
dealers AS (SELECT DISTINCT dealer FROM flow),
daily AS (
  SELECT day, dealer, sum(n) AS n FROM (
    SELECT day, dealer, n FROM flow
    UNION ALL SELECT days.day, dealers.dealer, 0 FROM ({_SQL["days"]}) days CROSS JOIN dealers) x
  GROUP BY day, dealer),
running AS (SELECT day, dealer, sum(n) OVER (PARTITION BY dealer ORDER BY day) AS n FROM daily)
SELECT '{metric}', day, dealer, '', n FROM running WHERE day >= :d0 AND n <> 0"""
    )


_MEMBER_DEALER = "COALESCE(m.enrolling_dealer_id, 0)"


def _spell_statements() -> tuple[tuple[tuple[str, ...], str], ...]:
    """Every metric's statements in ``_SQL``'s dialect. In order: ``tier_mix``'s silver row is what
    ``members_total`` leaves after the other tiers."""
    return (
        (
            ("new_members",),
            _INSERT
            + f"""SELECT 'new_members', {_day("m.enrolled_at")}, {_MEMBER_DEALER}, '', count(*)
    FROM members m WHERE {_COUNTED} AND m.enrolled_at >= :t0 AND m.enrolled_at < :t1 GROUP BY 2, 3""",
        ),
        (
            ("new_members_advisor",),
            _INSERT
            + f"""SELECT 'new_members_advisor', {_day("m.enrolled_at")}, {_MEMBER_DEALER},
           CAST(m.enrolling_staff_id AS text), count(*)
    FROM members m WHERE {_COUNTED} AND m.enrolling_staff_id IS NOT NULL
      AND m.enrolled_at >= :t0 AND m.enrolled_at < :t1
    GROUP BY 2, 3, 4""",
        ),
        (
            ("preenrolled", "preenrolled_activated"),
            _INSERT
            + f"""SELECT metric, day, dealer, '', n FROM (
    SELECT x.metric, c.day, c.dealer, CASE x.metric WHEN 'preenrolled' THEN c.total ELSE c.activated END AS n FROM (
      SELECT {_day("m.enrolled_at")} AS day, {_MEMBER_DEALER} AS dealer,
             count(*) AS total, count(m.activated_at) AS activated
      FROM members m WHERE {_COUNTED} AND m.enrollment_channel = 'purchase'
        AND m.enrolled_at >= :t0 AND m.enrolled_at < :t1
      GROUP BY 1, 2) c
    CROSS JOIN (SELECT 'preenrolled' AS metric UNION ALL SELECT 'preenrolled_activated') x) y
    WHERE n > 0""",
        ),
        (
            ("members_total",),
            _stock(
                "members_total",
                source="members m",
                ts="m.enrolled_at",
                dealer=_MEMBER_DEALER,
                value="count(*)",
                where=_IN_STOCK,
            ),
        ),
        (
            ("active_30d",),
            # Linear in the movements: each member's distinct active days become ranges [day, next
            # active day or day + 30), which never overlap; a member is active on the days its ranges
            # cover, so the day's count is the running sum of the ranges' starts (+1) and ends (-1).
            _INSERT
            + f"""
    WITH act AS (SELECT DISTINCT {_day("e.occurred_at")} AS day, e.member_id FROM point_entries e
                 WHERE e.kind <> 'expire' AND e.occurred_at >= :ta AND e.occurred_at < :t1),
    ranges AS (
      SELECT r.starts, r.ends, {_MEMBER_DEALER} AS dealer FROM (
        SELECT member_id, day AS starts,
               {_SQL["least"]}(COALESCE(lead(day) OVER (PARTITION BY member_id ORDER BY day), {_plus("day", 30)}),
                               {_plus("day", 30)}) AS ends
        FROM act) r
      JOIN members m ON m.id = r.member_id AND {_IN_STOCK}),
    dealers AS (SELECT DISTINCT dealer FROM ranges),
    daily AS (
      SELECT day, dealer, sum(n) AS n FROM (
        SELECT starts AS day, dealer, 1 AS n FROM ranges
        UNION ALL SELECT ends, dealer, -1 FROM ranges WHERE ends <= :d1
        UNION ALL SELECT days.day, dealers.dealer, 0 FROM ({_SQL["days"]}) days CROSS JOIN dealers) x
      GROUP BY day, dealer),
    running AS (SELECT day, dealer, sum(n) OVER (PARTITION BY dealer ORDER BY day) AS n FROM daily)
    SELECT 'active_30d', day, dealer, '', n FROM running WHERE day >= :d0 AND n > 0""",
        ),
        (
            ("tier_mix",),
            _INSERT
            + f"""
    WITH spans AS (
      SELECT c.member_id, c.to_tier, c.changed_at AS since,
             lead(c.changed_at) OVER (PARTITION BY c.member_id ORDER BY c.changed_at, c.id) AS until
      FROM tier_changes c WHERE c.changed_at < :t1),
    -- A span counts at the end of day D if it began (and its member was enrolled) by then and
    -- ended after: on the days [starts, ends). Those live in the window become +1 on their first
    -- day (the day before the window for those live already: the opening count) and -1 on the
    -- day they end, summed up running per dealer and tier: linear in the history.
    live AS (
      SELECT {_MEMBER_DEALER} AS dealer, s.to_tier AS tier,
             {_SQL["greatest"]}({_day("s.since")}, {_day("m.enrolled_at")}, {_SQL["day_before_window"]}) AS starts,
             {_day("s.until")} AS ends
      FROM spans s JOIN members m ON m.id = s.member_id AND {_IN_STOCK}
      WHERE s.to_tier <> 'silver' AND m.enrolled_at < :t1
        AND (s.until IS NULL OR {_day("s.until")} > {_SQL["greatest"]}({_day("s.since")}, {_day("m.enrolled_at")},
                                                                         {_SQL["day_before_window"]}))),
    kinds AS (SELECT DISTINCT dealer, tier FROM live),
    daily AS (
      SELECT day, dealer, tier, sum(n) AS n FROM (
        SELECT starts AS day, dealer, tier, 1 AS n FROM live
        UNION ALL SELECT ends, dealer, tier, -1 FROM live WHERE ends <= :d1
        UNION ALL SELECT days.day, kinds.dealer, kinds.tier, 0 FROM ({_SQL["days"]}) days CROSS JOIN kinds) x
      GROUP BY day, dealer, tier),
    running AS (SELECT day, dealer, tier, sum(n) OVER (PARTITION BY dealer, tier ORDER BY day) AS n FROM daily)
    SELECT 'tier_mix', day, dealer, tier, n FROM running WHERE day >= :d0 AND n > 0;
    """
            + _INSERT
            + """SELECT 'tier_mix', t.day, t.dealer_id, 'silver', t.value - COALESCE(o.n, 0)
    FROM daily_metrics t
    LEFT JOIN (SELECT day, dealer_id, sum(value) AS n FROM daily_metrics
               WHERE metric = 'tier_mix' AND day BETWEEN :d0 AND :d1 GROUP BY 1, 2) o
      ON o.day = t.day AND o.dealer_id = t.dealer_id
    WHERE t.metric = 'members_total' AND t.day BETWEEN :d0 AND :d1 AND t.value - COALESCE(o.n, 0) > 0""",
        ),
        (
            ("points",),
            _INSERT
            + f"""SELECT 'points', {_day("e.occurred_at")}, {_MEMBER_DEALER},
           e.kind || CASE WHEN e.points > 0 THEN '+' ELSE '-' END, sum(e.points)
    FROM point_entries e JOIN members m ON m.id = e.member_id
    WHERE e.currency = 'reward' AND e.occurred_at >= :t0 AND e.occurred_at < :t1 GROUP BY 2, 3, 4""",
        ),
        (
            ("points_balance",),
            _stock(
                "points_balance",
                source="point_entries e JOIN members m ON m.id = e.member_id",
                ts="e.occurred_at",
                dealer=_MEMBER_DEALER,
                value="sum(e.points)",
                where="e.currency = 'reward'",
            ),
        ),
        (
            ("red_packet_fen",),
            _INSERT
            + f"""SELECT 'red_packet_fen', {_day("g.sent_at")}, COALESCE(c.dealer_id, 0), CAST(g.campaign_id AS text),
           sum(g.amount_fen)
    FROM red_packet_grants g JOIN campaigns c ON c.id = g.campaign_id
    WHERE g.status IN ('sent', 'received') AND g.sent_at >= :t0 AND g.sent_at < :t1 GROUP BY 2, 3, 4""",
        ),
        (
            ("benefit_used",),
            _INSERT
            + f"""SELECT 'benefit_used', {_day("b.delivered_at")}, COALESCE(b.dealer_id, 0), b.benefit_code, count(*)
    FROM bookings b WHERE b.status = 'delivered' AND b.delivered_at >= :t0 AND b.delivered_at < :t1 GROUP BY 2, 3, 4""",
        ),
        (
            ("benefit_ratings", "benefit_rating_sum"),
            _INSERT
            + f"""SELECT x.metric, r.day, r.dealer, r.code,
           CASE x.metric WHEN 'benefit_ratings' THEN r.ratings ELSE r.total END
    FROM (
      SELECT {_day("b.rated_at")} AS day, COALESCE(b.dealer_id, 0) AS dealer, b.benefit_code AS code,
             count(*) AS ratings, sum(b.rating) AS total
      FROM bookings b WHERE b.rating IS NOT NULL AND b.rated_at >= :t0 AND b.rated_at < :t1 GROUP BY 1, 2, 3) r
    CROSS JOIN (SELECT 'benefit_ratings' AS metric UNION ALL SELECT 'benefit_rating_sum') x""",
        ),
        (
            ("referrals",),
            _INSERT
            + f"""SELECT 'referrals', day, dealer_id, stage, n FROM (
    SELECT c.day, c.dealer_id, x.stage,
           CASE x.stage WHEN 'lead' THEN c.leads WHEN 'test_drive' THEN c.test_drives WHEN 'order' THEN c.orders
                        ELSE c.deliveries END AS n FROM (
      SELECT {_day("r.attributed_at")} AS day, r.dealer_id, count(*) AS leads, count(r.test_drive_at) AS test_drives,
             count(r.ordered_at) AS orders, count(r.delivered_at) AS deliveries
      FROM referrals r WHERE r.attributed_at >= :t0 AND r.attributed_at < :t1 GROUP BY 1, 2) c
    CROSS JOIN (SELECT 'lead' AS stage UNION ALL SELECT 'test_drive' UNION ALL SELECT 'order'
                UNION ALL SELECT 'delivery') x) y
    WHERE n > 0""",
        ),
        (
            ("notifications",),
            _INSERT
            + f"""SELECT 'notifications', {_day("n.created_at")}, {_MEMBER_DEALER},
           n.kind || '|' || n.channel || '|' || n.status, count(*)
    FROM notifications n LEFT JOIN members m ON m.id = n.member_id
    WHERE n.created_at >= :t0 AND n.created_at < :t1 GROUP BY 2, 3, 4""",
        ),
        (
            ("complaints",),
            _INSERT
            + f"""SELECT 'complaints', {_day("c.created_at")}, {_MEMBER_DEALER}, c.category, count(*)
    FROM complaints c JOIN members m ON m.id = c.member_id
    WHERE c.created_at >= :t0 AND c.created_at < :t1 GROUP BY 2, 3, 4""",
        ),
    )


#: Daily flows whose sums over a range the charts read (not stocks, not 30-day windows): these also
#: get a row per month (``<metric>@month``), recomputed for every month the window touches.
MONTHLY = (
    "new_members",
    "new_members_advisor",
    "red_packet_fen",
    "benefit_used",
    "benefit_ratings",
    "benefit_rating_sum",
    "referrals",
    "notifications",
    "complaints",
)


def _spell_months() -> str:
    return (
        _INSERT
        + f"""SELECT metric || '{MONTHLY_SUFFIX}', {_SQL["month_of"].format(d="day")}, dealer_id, key, sum(value)
FROM daily_metrics WHERE day >= :m0 AND day < :m1 AND metric IN :monthly GROUP BY 1, 2, 3, 4"""
    )


#: The statements spelled once per dialect at import (``_SQL`` is what the helpers above read).
_SPELLED: dict[str, tuple[tuple[tuple[tuple[str, ...], str], ...], str]] = {}
for _dialect, _SQL in _DIALECTS.items():  # the helpers above read _SQL
    _SPELLED[_dialect] = (_spell_statements(), _spell_months())
STATEMENTS = _SPELLED["postgresql"][0]
METRICS: tuple[str, ...] = tuple(metric for metrics, _sql in STATEMENTS for metric in metrics)
#: Every metric's rows summed over the dealers, for HQ's charts: the daily metrics just rolled only
#: (the month rows, dated the 1st, get theirs from the daily totals in ``_roll_months``; summing last
#: run's month rows here again made a duplicate of HQ's month row whenever a window held a 1st).
_TOTALS = (
    _INSERT
    + f"""SELECT metric, day, {ALL_DEALERS}, key, sum(value) FROM daily_metrics
WHERE day BETWEEN :d0 AND :d1 AND dealer_id <> {ALL_DEALERS} AND metric IN :metrics GROUP BY metric, day, key"""
)


@dataclass(frozen=True)
class RollupRun:
    first: dt.date
    last: dt.date
    rows: int


def roll(first: dt.date, last: dt.date) -> RollupRun:
    """Recompute every metric for the business days ``first``..``last`` (flush, never commit)."""
    if last < first:
        raise ValidationFailed(fields={"to": [_("The end date is before the start date.")]})
    if (last - first).days >= MAX_BACKFILL_DAYS:
        raise ValidationFailed(fields={"from": [_("At most %(days)s days at a time.", days=MAX_BACKFILL_DAYS)]})
    db.session.flush()
    if db.dialect == "postgresql":  # SQLite (`make run`) writes one transaction at a time anyway
        db.session.execute(sa.text(f"SELECT pg_advisory_xact_lock({_LOCK})"))
    db.session.execute(
        sa.delete(DailyMetric).where(DailyMetric.day >= first, DailyMetric.day <= last, DailyMetric.metric.in_(METRICS))
    )
    params = {
        "d0": first,
        "d1": last,
        "t0": business_day_start(first),
        "t1": business_day_start(last + dt.timedelta(days=1)),
        "ta": business_day_start(first - dt.timedelta(days=29)),
    }
    if db.dialect == "sqlite":
        params = {name: _as_sqlite_text(value) for name, value in params.items()}
    for _metrics, sql in _SPELLED[db.dialect][0]:
        for statement in sql.split(";\n"):
            db.session.execute(sa.text(statement), params)
    totals = sa.text(_TOTALS).bindparams(sa.bindparam("metrics", expanding=True))
    db.session.execute(totals, {**params, "metrics": list(METRICS)})
    _roll_months(first, last)
    rows = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(DailyMetric)
        .where(DailyMetric.day >= first, DailyMetric.day <= last, DailyMetric.metric.in_(METRICS))
    )
    return RollupRun(first, last, int(rows or 0))


def _as_sqlite_text(value: dt.date) -> str:
    """A bound date or instant as SQLite holds the columns it is compared with (naive UTC text)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value.isoformat()


def _roll_months(first: dt.date, last: dt.date) -> None:
    """Recompute the month rows of every month the window touches, from its daily rows."""
    m0 = first.replace(day=1)
    m1 = (last.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    monthly = [metric + MONTHLY_SUFFIX for metric in MONTHLY]
    db.session.execute(
        sa.delete(DailyMetric).where(DailyMetric.metric.in_(monthly), DailyMetric.day >= m0, DailyMetric.day < m1)
    )
    statement = sa.text(_SPELLED[db.dialect][1]).bindparams(sa.bindparam("monthly", expanding=True))
    bounds = {"m0": m0, "m1": m1}
    if db.dialect == "sqlite":
        bounds = {name: _as_sqlite_text(value) for name, value in bounds.items()}
    db.session.execute(statement, {**bounds, "monthly": list(MONTHLY)})


def backfill(first: dt.date, last: dt.date) -> list[RollupRun]:
    """Roll ``first``..``last`` a month at a time, committing each (the CLI's backfill)."""
    if last < first:
        raise ValidationFailed(fields={"to": [_("The end date is before the start date.")]})
    runs = []
    start = first
    while start <= last:
        end = min(last, start + dt.timedelta(days=CHUNK_DAYS - 1))
        runs.append(roll(start, end))
        db.session.commit()
        start = end + dt.timedelta(days=1)
    return runs


@job("periodic", timeout=1800)
def roll_recent() -> dict[str, object]:
    """Hourly: yesterday and today (late events of yesterday land in its figures)."""
    today = business_today()
    run = roll(today - dt.timedelta(days=1), today)
    db.session.commit()
    return {"from": run.first.isoformat(), "to": run.last.isoformat(), "rows": run.rows}


@job("periodic", timeout=3600)
def reroll_window() -> dict[str, object]:
    """Nightly: the last ``dashboard.reroll_days`` days (cohorts settle, statuses change), in one
    window: the stocks' opening balances read the whole history once, not once per month."""
    today = business_today()
    run = roll(today - dt.timedelta(days=max(1, int(REROLL_DAYS.value())) - 1), today)
    db.session.commit()
    return {"from": run.first.isoformat(), "to": run.last.isoformat(), "rows": run.rows}
