"""Planners: set-based passes over the whole base that write the reminders due on a day.

Kinds (SPEC §8): points expiring (30 and 7 days before), anniversaries, tiers at risk, birthdays
(by the plain ``birth_month_day``; 29 February is greeted on the 28th in common years), maintenance
due (from the last service, the odometer and the model's interval), insurance renewal (30 days
before the policy ends) and, from the nightly lifecycle pass, churn-risk win-backs
(``care.lifecycle``). Welcome, tier changes, bookings and rating requests come from domain events
(``care.events``).

Each planner inserts one row per (member, kind, period) with ``ON CONFLICT DO NOTHING`` on the
dedupe key, so planning twice, or two planners at once, make one row (and one message). Rows are
due at 09:00 Asia/Shanghai on the day; the dispatcher (``notify.send_due``) sends them, and the
renderer skips a reminder that no longer applies (points spent, tier kept).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.care import lifecycle, maintenance, rules
from app.care.models import Notification
from app.core import tunables
from app.core.clock import business_day_start, business_today, utcnow
from app.core.db import BigIntType, JSONType, db
from app.jobs import job
from app.members.models import Member, Ownership, Vehicle
from app.points.models import PointLot
from app.tiers import policy
from app.tiers.models import TierState

#: Days before points expire when members are reminded (SPEC §8).
EXPIRY_REMINDER_DAYS = (30, 7)
#: Membership anniversaries celebrated (years).
MAX_ANNIVERSARY_YEARS = 30
INSURANCE_REMINDER_DAYS = tunables.define(
    "care.insurance_reminder_days", 30, "Days before a car's insurance policy ends when its owner is reminded"
)
MAINTENANCE_LEAD_DAYS = tunables.define(
    "care.maintenance_lead_days", 14, "Days before a car's maintenance is due when its owner is reminded"
)
#: Vehicles read per page by the maintenance planner in Python (SQLite).
PAGE = 2000
#: Range of vehicle ids planned per statement by the set-based maintenance planner (PostgreSQL).
SET_CHUNK = 100_000


@dataclass(frozen=True)
class Planned:
    kind: str
    rows: int


def _due_at(day: dt.date) -> dt.datetime:
    return rules.reminder_time(day)


def _insert_planned(kind: str, select: sa.Select, *, dry_run: bool) -> int:
    """INSERT … SELECT member_id, dedupe_key, period ON CONFLICT DO NOTHING; returns rows planned.

    A dry run counts what the select finds without writing (rows already planned included)."""
    if dry_run:
        return db.session.scalar(sa.select(sa.func.count()).select_from(select.subquery())) or 0
    rows = select.subquery()
    now = utcnow()
    source = sa.select(
        rows.c.member_id,
        sa.literal(kind),
        sa.literal("official_template"),
        rows.c.dedupe_key,
        rows.c.period,
        sa.literal("planned"),
        sa.literal({}, JSONType),
        sa.literal(0),
        sa.literal(now, Notification.__table__.c.created_at.type),
        rows.c.due_at,
    ).where(sa.true())  # SQLite: without a WHERE, "… FROM anon ON CONFLICT" parses as a join's ON
    columns = ["member_id", "kind", "channel", "dedupe_key", "period", "status", "payload", "attempts"]
    columns += ["created_at", "due_at"]
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(Notification.__table__)
        .from_select(columns, source)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(Notification.__table__.c.id)
    )
    return len(db.session.execute(statement).all())


def dedupe_key(kind: str, member_id: int, period: str) -> str:
    """``<kind>:<member id>:<period>``: one message per (member, kind, period), however planned."""
    return f"{kind}:{member_id}:{period}"


def _key(kind: str, member_id: sa.ColumnElement[int], period: str | sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``dedupe_key`` in SQL (the same key ``notify.queue`` writes); ``period`` may be a column."""
    if isinstance(period, str):
        return sa.literal(f"{kind}:") + sa.cast(member_id, sa.String) + sa.literal(f":{period}")  # type: ignore[return-value]
    return sa.literal(f"{kind}:") + sa.cast(member_id, sa.String) + sa.literal(":") + period  # type: ignore[return-value]


def _planned_rows(kind: str, rows: Iterable[tuple[int, str, dt.datetime]]) -> sa.Select:
    """A select over (member_id, period, due_at) rows computed in Python, for ``_insert_planned``."""
    values = sa.values(
        sa.column("member_id", BigIntType),
        sa.column("dedupe_key", sa.String),
        sa.column("period", sa.String),
        sa.column("due_at", Notification.__table__.c.due_at.type),
        name="planned_rows",
    ).data([(member_id, dedupe_key(kind, member_id, period), period, due_at) for member_id, period, due_at in rows])
    return sa.select(values.c.member_id, values.c.dedupe_key, values.c.period, values.c.due_at)


def _members_due(kind: str, period: str, today: dt.date) -> sa.Select:
    """Members to remind of ``kind`` for ``period`` at 09:00 on ``today`` (add the ``where``)."""
    return sa.select(
        Member.id.label("member_id"),
        _key(kind, Member.id, period).label("dedupe_key"),
        sa.literal(period).label("period"),
        sa.literal(_due_at(today), Notification.__table__.c.due_at.type).label("due_at"),
    )


def plan_points_expiring(today: dt.date, *, dry_run: bool = False) -> int:
    """Members with spendable points that expire 30 (and 7) days from today: one reminder each."""
    planned = 0
    for days in EXPIRY_REMINDER_DAYS:
        last_day = today + dt.timedelta(days=days)
        start, end = business_day_start(last_day), business_day_start(last_day + dt.timedelta(days=1))
        period = f"{last_day.isoformat()}:{days}d"
        select = (
            sa.select(
                PointLot.member_id.label("member_id"),
                _key("points_expiring", PointLot.member_id, period).label("dedupe_key"),
                sa.literal(period).label("period"),
                sa.literal(_due_at(today), Notification.__table__.c.due_at.type).label("due_at"),
            )
            .where(
                PointLot.status == "available",
                PointLot.remaining > 0,
                PointLot.expires_at > start,
                PointLot.expires_at <= end,
            )
            .group_by(PointLot.member_id)
        )
        planned += _insert_planned("points_expiring", select, dry_run=dry_run)
    return planned


def _same_day_in(year: int, day: dt.date) -> dt.date | None:
    try:
        return day.replace(year=year)
    except ValueError:  # 29 February in a common year
        return None


def plan_anniversaries(today: dt.date, *, dry_run: bool = False) -> int:
    """Active members who enrolled on this calendar day 1 … 30 years ago."""
    ranges = []
    for years in range(1, MAX_ANNIVERSARY_YEARS + 1):
        day = _same_day_in(today.year - years, today)
        if day is not None:
            start = business_day_start(day)
            ranges.append(sa.and_(Member.enrolled_at >= start, Member.enrolled_at < start + dt.timedelta(days=1)))
    select = _members_due("anniversary", str(today.year), today).where(Member.status == "active", sa.or_(*ranges))
    return _insert_planned("anniversary", select, dry_run=dry_run)


def plan_tiers_at_risk(today: dt.date, *, dry_run: bool = False) -> int:
    """Members whose tier review is 30 days away and who would drop if nothing happens."""
    review_on = today + dt.timedelta(days=policy.AT_RISK_DAYS.value())
    select = (
        _members_due("tier_at_risk", review_on.isoformat(), today)
        .join(TierState, TierState.member_id == Member.id)
        .where(policy.would_drop_on(review_on))
    )
    return _insert_planned("tier_at_risk", select, dry_run=dry_run)


def plan_birthdays(today: dt.date, *, dry_run: bool = False) -> int:
    """Active members whose birthday is today: a greeting at 09:00 (the birthday month's double
    service points apply through the earning rules, not here)."""
    select = _members_due("birthday", str(today.year), today).where(
        Member.status == "active", Member.birth_month_day.in_(rules.birthday_month_days(today))
    )
    return _insert_planned("birthday", select, dry_run=dry_run)


def _current_owner_join(select: sa.Select) -> sa.Select:
    return select.join(
        Ownership,
        sa.and_(Ownership.vehicle_id == Vehicle.id, Ownership.role == "owner", Ownership.ended_on.is_(None)),
    ).join(Member, sa.and_(Member.id == Ownership.member_id, Member.status == "active"))


def plan_insurance_renewals(today: dt.date, *, dry_run: bool = False) -> int:
    """Current owners of cars whose policy ends 30 days from today: renew at the dealer."""
    ends_on = today + dt.timedelta(days=INSURANCE_REMINDER_DAYS.value())
    period = sa.cast(Vehicle.id, sa.String) + sa.literal(f":{ends_on.isoformat()}")
    select = _current_owner_join(
        sa.select(
            Ownership.member_id.label("member_id"),
            _key("insurance_renewal", Ownership.member_id, period).label("dedupe_key"),
            period.label("period"),
            sa.literal(_due_at(today), Notification.__table__.c.due_at.type).label("due_at"),
        ).select_from(Vehicle)
    ).where(Vehicle.insurance_ends_on == ends_on)
    return _insert_planned("insurance_renewal", select, dry_run=dry_run)


def plan_maintenance(today: dt.date, *, dry_run: bool = False) -> int:
    """Current owners of cars due for maintenance within ``care.maintenance_lead_days``: one
    reminder per car and due date (a later service makes a new due date; a resale, a new owner).

    PostgreSQL: set-based, one ``INSERT … SELECT`` per range of car ids with the due date computed
    in SQL (``maintenance.due_sql_joined``, the rule of ``due_on``). SQLite (``make run``): cars
    page by page through ``due_on`` in Python (its date arithmetic has no month clamping)."""
    if db.dialect == "postgresql":
        return _plan_maintenance_in_sql(today, dry_run=dry_run)
    return _plan_maintenance_in_python(today, dry_run=dry_run)


def _plan_maintenance_in_sql(today: dt.date, *, dry_run: bool) -> int:
    lead = dt.timedelta(days=MAINTENANCE_LEAD_DAYS.value())
    low, high = db.session.execute(sa.select(sa.func.min(Vehicle.id), sa.func.max(Vehicle.id))).one()
    if low is None:
        return 0
    planned, after = 0, low - 1
    due = maintenance.due_sql_joined()
    while after < high:  # id ranges, not keyset pages: each statement is bounded on both sides of the join
        upto = after + SET_CHUNK
        cars = (
            _current_owner_join(
                maintenance.with_intervals(
                    sa.select(Ownership.member_id.label("member_id"), Vehicle.id.label("vehicle_id"), due.label("due"))
                )
            )
            .where(Vehicle.id > after, Vehicle.id <= upto, Ownership.vehicle_id > after, Ownership.vehicle_id <= upto)
            .subquery("cars")
        )
        period = sa.cast(cars.c.vehicle_id, sa.String) + sa.literal(":") + sa.func.to_char(cars.c.due, "YYYY-MM-DD")
        select = sa.select(
            cars.c.member_id,
            _key("maintenance_due", cars.c.member_id, period).label("dedupe_key"),
            period.label("period"),
            sa.literal(_due_at(today), Notification.__table__.c.due_at.type).label("due_at"),
        ).where(cars.c.due.between(today, today + lead))
        planned += _insert_planned("maintenance_due", select, dry_run=dry_run)
        after = upto
    return planned


def _plan_maintenance_in_python(today: dt.date, *, dry_run: bool) -> int:
    by_model, lead = maintenance.intervals(), dt.timedelta(days=MAINTENANCE_LEAD_DAYS.value())
    default = by_model.get("default")
    planned, after = 0, 0
    while True:  # keyset pages over owned cars: the due date is decided in Python
        page = db.session.execute(
            _current_owner_join(sa.select(*maintenance.SERVICE_COLUMNS, Ownership.member_id))
            # Both sides of the join bounded: with only the cars' bound, the planner merge-joins by
            # walking the owners' index from its start on every page (quadratic over the base).
            .where(Vehicle.id > after, Ownership.vehicle_id > after)
            .order_by(Vehicle.id)
            .limit(PAGE)
        ).all()
        if not page:
            return planned
        after = page[-1].id
        rows = []
        for car in page:
            interval = by_model.get(car.model_code, default)
            due = maintenance.due_on(car, interval) if interval else None
            if due is not None and due - lead <= today <= due:
                rows.append((car.member_id, f"{car.id}:{due.isoformat()}", _due_at(today)))
        if rows:
            planned += _insert_planned("maintenance_due", _planned_rows("maintenance_due", rows), dry_run=dry_run)


PLANNERS: dict[str, Callable[..., int]] = {
    "points_expiring": plan_points_expiring,
    "anniversary": plan_anniversaries,
    "tier_at_risk": plan_tiers_at_risk,
    "birthday": plan_birthdays,
    "maintenance_due": plan_maintenance,
    "insurance_renewal": plan_insurance_renewals,
    "win_back": lifecycle.plan_win_backs,
}
#: Planners that commit as they go (the lifecycle pass, a page per commit): a savepoint cannot hold
#: their writes back, so their dry run counts without writing instead.
COMMITS_AS_IT_GOES = frozenset({"win_back"})


def plan(today: dt.date | None = None, *, kinds: list[str] | None = None, dry_run: bool = False) -> list[Planned]:
    """Run the planners (all, or ``kinds``) for ``today``; flushes, the caller commits."""
    today = today or business_today()
    return [Planned(kind, PLANNERS[kind](today, dry_run=dry_run)) for kind in kinds or PLANNERS]


@job("periodic", timeout=3600)
def plan_todays_reminders() -> dict[str, int]:
    """Nightly: write the day's reminders (sent from 09:00 by the dispatcher)."""
    return {planned.kind: planned.rows for planned in plan()}
