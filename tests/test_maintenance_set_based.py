"""Sameness of the set-based maintenance planner (PostgreSQL: one ``INSERT … SELECT`` per range of
car ids, the due date in SQL) with the page-by-page planner that decides each car with
``maintenance.due_on`` in Python (SQLite's path, kept as the oracle): the same reminder rows —
member, key, period, payload, due time — on a varied base planned on many days, and the SQL due
date equal to ``due_on`` on any car and interval (hypothesis)."""

from __future__ import annotations

import datetime as dt
import random

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.care import maintenance, planning
from app.care.models import MaintenanceInterval, Notification
from app.core.db import db
from app.members import services
from app.members.models import Vehicle
from tests import factories

pytestmark = pytest.mark.postgres

MODELS = ("MAGOTAN", "ID4", "SAGITAR", "SHORT", "NO-SUCH-MODEL")


def _some_day(rng: random.Random, start: dt.date, days: int) -> dt.date:
    """A day in [start, start + days), one in four at a month's end or on 29 February."""
    day = start + dt.timedelta(days=rng.randrange(days))
    if rng.random() < 0.25:
        day = rng.choice([day.replace(day=1) - dt.timedelta(days=1), dt.date(2024, 2, 29), dt.date(2025, 1, 31)])
    return day


def varied_base(rng: random.Random, cars: int) -> None:
    """Cars of several models (one with a model interval of its own, one without), serviced or not,
    km-first or months-first, serviced on or before the purchase day, odometer 0 or missing; owned by
    active or closed members, sold on, driven by a co-user only, or owned by nobody."""
    db.session.add(MaintenanceInterval(model_code="SHORT", months=1, km=500))
    db.session.flush()
    active = [factories.member() for _ in range(12)]
    closed = factories.member(status="closed")
    for _ in range(cars):
        bought = None if rng.random() < 0.04 else _some_day(rng, dt.date(2023, 6, 1), 1200)
        car = factories.vehicle(owner=None, purchase_date=bought, model_code=rng.choice(MODELS))
        if rng.random() < 0.75:
            serviced = _some_day(rng, (bought or dt.date(2025, 1, 1)) - dt.timedelta(days=3), 500)
            low, mid, high = rng.randrange(1, 300), rng.randrange(300, 60_000), rng.randrange(60_000, 200_000)
            km = rng.choice([0, None, low, mid, high])
            car.last_service_on, car.last_service_km = serviced, km
        owner = rng.random()
        started = bought or dt.date(2023, 1, 1)
        if owner < 0.70:
            services.start_ownership(rng.choice(active), car, started_on=started)
        elif owner < 0.78:
            services.start_ownership(closed, car, started_on=started)
        elif owner < 0.88:  # sold on: only the buyer is the current owner
            seller, buyer = rng.sample(active, 2)
            services.start_ownership(seller, car, started_on=started)
            services.start_ownership(buyer, car, started_on=started + dt.timedelta(days=30))
        elif owner < 0.94:
            services.start_ownership(rng.choice(active), car, started_on=started, role="co_user")
    db.session.flush()


COLUMNS = (
    Notification.member_id,
    Notification.kind,
    Notification.channel,
    Notification.dedupe_key,
    Notification.period,
    Notification.status,
    Notification.payload,
    Notification.attempts,
    Notification.due_at,
)


def planned(path, today: dt.date) -> tuple[int, int, list[tuple]]:
    """(dry-run count, rows planned, the rows) of one planner path on ``today``, rolled back."""
    savepoint = db.session.begin_nested()
    counted = path(today, dry_run=True)
    written = path(today, dry_run=False)
    rows = db.session.execute(
        sa.select(*COLUMNS).where(Notification.kind == "maintenance_due").order_by(Notification.dedupe_key)
    ).all()
    savepoint.rollback()
    return counted, written, [tuple(row) for row in rows]


def test_the_set_based_planner_plans_the_same_reminders_as_due_on(app_ctx, monkeypatch):
    varied_base(random.Random(18), cars=400)
    monkeypatch.setattr(planning, "SET_CHUNK", 37)  # many id ranges, cars at their edges
    # one reminder already planned: both paths skip it alike
    already = dt.date(2026, 3, 2)
    planning._plan_maintenance_in_python(already, dry_run=False)
    total, days = 0, [dt.date(2024, 6, 1) + dt.timedelta(days=n) for n in range(0, 1100, 9)]
    for today in [already, dt.date(2025, 2, 28), dt.date(2028, 2, 15), *days]:
        by_python = planned(planning._plan_maintenance_in_python, today)
        in_sql = planned(planning._plan_maintenance_in_sql, today)
        assert in_sql == by_python, today
        assert planned(planning.plan_maintenance, today) == in_sql  # PostgreSQL takes the SQL path
        total += by_python[1]
    assert total > 300  # not vacuous: plenty of due cars over the days


def test_without_a_default_interval_unknown_models_are_skipped_alike(app_ctx):
    varied_base(random.Random(7), cars=120)
    db.session.execute(sa.delete(MaintenanceInterval).where(MaintenanceInterval.model_code == "default"))
    total = 0
    for today in [dt.date(2024, 6, 1) + dt.timedelta(days=n) for n in range(0, 1100, 10)]:
        by_python = planned(planning._plan_maintenance_in_python, today)
        assert planned(planning._plan_maintenance_in_sql, today) == by_python, today
        total += by_python[1]
    assert total > 50


dates = st.one_of(st.none(), st.dates(dt.date(2015, 1, 1), dt.date(2030, 12, 31)))


def due_in_sql(car: Vehicle) -> dt.date | None:
    """``maintenance.due_sql_joined`` for one car, as the set-based planner joins it."""
    statement = maintenance.with_intervals(sa.select(maintenance.due_sql_joined())).where(Vehicle.id == car.id)
    return db.session.scalar(statement)


@pytest.fixture
def one_car(app_ctx):
    car = factories.vehicle(owner=factories.member(), model_code="HYPO")
    db.session.add(MaintenanceInterval(model_code="HYPO", months=12, km=10_000))
    db.session.flush()
    return car


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    bought=dates,
    serviced=dates,
    km=st.one_of(st.none(), st.integers(-50_000, 400_000)),
    months=st.integers(1, 60),
    interval_km=st.integers(1, 100_000),
)
@example(bought=dt.date(2024, 2, 29), serviced=dt.date(2024, 2, 29), km=5, months=12, interval_km=1)
@example(bought=dt.date(2024, 1, 31), serviced=None, km=None, months=1, interval_km=1)
@example(bought=dt.date(2024, 1, 1), serviced=dt.date(2024, 1, 4), km=3, months=13, interval_km=1)
@example(bought=dt.date(2024, 1, 1), serviced=dt.date(2024, 1, 4), km=-3, months=13, interval_km=2)
def test_the_joined_sql_due_date_is_due_on(one_car, bought, serviced, km, months, interval_km):
    interval = db.session.get(MaintenanceInterval, "HYPO")
    interval.months, interval.km = months, interval_km
    one_car.purchase_date, one_car.last_service_on, one_car.last_service_km = bought, serviced, km
    db.session.flush()
    try:
        expected = maintenance.due_on(one_car, interval)
    except OverflowError:  # beyond year 9999 in Python; PostgreSQL's dates reach further
        return
    in_sql = due_in_sql(one_car)
    assert in_sql == expected


def test_tiers_at_risk_are_planned_in_sql_for_the_states_would_drop_judges_at_risk(app_ctx):
    from app.tiers import policy
    from app.tiers.models import TierState

    today = dt.date(2026, 11, 20)
    review_on = today + dt.timedelta(days=policy.AT_RISK_DAYS.value())
    since = policy._inactive_since(review_on)
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    lasts = [None, since - dt.timedelta(microseconds=1), since, since + dt.timedelta(hours=1), long_ago]
    states = []
    for n in range(30):
        member = factories.member(status="closed" if n % 7 == 0 else "active")
        review = [review_on, review_on, review_on - dt.timedelta(days=1), review_on + dt.timedelta(days=1), None][n % 5]
        state = TierState(member_id=member.id, tier="gold", review_on=review, last_qualifying_at=lasts[(n // 5) % 5])
        states.append(db.session.merge(state))
    db.session.flush()
    expected = sorted(state.member_id for state in states if state.review_on == review_on and policy.would_drop(state))
    assert planning.plan_tiers_at_risk(today, dry_run=True) == len(expected) > 3
    assert planning.plan_tiers_at_risk(today) == len(expected)
    planned = db.session.execute(
        sa.select(Notification.member_id, Notification.period, Notification.due_at).where(
            Notification.kind == "tier_at_risk"
        )
    ).all()
    assert sorted(row.member_id for row in planned) == expected
    assert {(row.period, row.due_at) for row in planned} == {(review_on.isoformat(), planning._due_at(today))}


def test_an_absurd_odometer_reading_cannot_abort_the_night(one_car):
    """1 km in ten years with a 2,000,000 km interval: the km date is millions of days away (beyond
    an integer cast or PostgreSQL's dates in the worst case); the months' date is the answer."""
    interval = db.session.get(MaintenanceInterval, "HYPO")
    interval.months, interval.km = 12, 2_000_000_000
    one_car.purchase_date, one_car.last_service_on, one_car.last_service_km = (
        dt.date(2016, 1, 1),
        dt.date(2026, 1, 1),
        1,
    )
    db.session.flush()
    in_sql = due_in_sql(one_car)
    assert in_sql == dt.date(2027, 1, 1) == maintenance.due_on(one_car, interval)  # the sender's date too
    one_car.last_service_km = -1  # not from the DMS (it refuses negatives), but not a night's end either
    db.session.flush()
    in_sql = due_in_sql(one_car)
    assert in_sql == maintenance.due_on(one_car, interval) == dt.date(2026, 1, 1) - dt.timedelta(days=36_525)
