"""Maintenance due dates: the model's interval (months or km, whichever comes first; table
``maintenance_intervals``, ``default`` for models without a row) from the last service, the km
extrapolated at the car's average km per day since purchase (odometer at the last service divided
by the days from purchase to it). A car never serviced counts months from its purchase."""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

import sqlalchemy as sa

from app.care.models import MaintenanceInterval
from app.core.db import db
from app.members.models import Vehicle


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def intervals() -> dict[str, MaintenanceInterval]:
    """Maintenance intervals by model code (``default`` for the rest)."""
    return {row.model_code: row for row in db.session.scalars(sa.select(MaintenanceInterval))}


#: What the maintenance planner reads of a car (no VIN, no plate: nothing to decrypt).
SERVICE_COLUMNS = (
    Vehicle.id,
    Vehicle.model_code,
    Vehicle.purchase_date,
    Vehicle.last_service_on,
    Vehicle.last_service_km,
)


#: The km-extrapolated due date lies within a century of the last service either way: an absurd
#: odometer reading (1 km in years) must not overflow a date, in Python or in SQL, and abort a night.
KM_DAYS_CAP = 36_525  # days


def due_on(vehicle: Any, interval: MaintenanceInterval) -> dt.date | None:
    """When a car next needs maintenance: ``months`` after the last service (or the purchase), or
    earlier when the odometer, extrapolated at the car's average km per day, reaches ``km`` more."""
    base = vehicle.last_service_on or vehicle.purchase_date
    if base is None:
        return None
    due = _add_months(base, interval.months)
    if vehicle.last_service_on and vehicle.last_service_km and vehicle.purchase_date:
        days_driven = (vehicle.last_service_on - vehicle.purchase_date).days
        if days_driven > 0:  # interval.km at last_service_km / days_driven km a day, in whole days
            days = -(-interval.km * days_driven // vehicle.last_service_km)
            days = max(-KM_DAYS_CAP, min(days, KM_DAYS_CAP))  # an absurd reading: as in the SQL
            due = min(due, vehicle.last_service_on + dt.timedelta(days=days))
    return due


#: The car's own model interval and the ``default`` one, outer-joined by the set-based planner.
MODEL_INTERVAL = sa.alias(MaintenanceInterval.__table__, "model_interval")
DEFAULT_INTERVAL = sa.alias(MaintenanceInterval.__table__, "default_interval")


def with_intervals(select: sa.Select) -> sa.Select:
    """``select`` from ``vehicles`` outer-joined to its model's interval and the ``default`` one, the
    join ``due_sql_joined`` reads."""
    return (
        select.select_from(Vehicle)
        .outerjoin(MODEL_INTERVAL, MODEL_INTERVAL.c.model_code == Vehicle.model_code)
        .outerjoin(DEFAULT_INTERVAL, DEFAULT_INTERVAL.c.model_code == "default")
    )


def due_sql_joined() -> sa.ColumnElement[dt.date]:
    """``due_on`` in PostgreSQL's SQL for a query joining ``vehicles`` to ``MODEL_INTERVAL`` (on its
    model code) and ``DEFAULT_INTERVAL`` (on ``'default'``), both outer (``with_intervals``): the model's interval, else
    ``default`` (months and km are NOT NULL, so a missing row is the only NULL); NULL when neither
    exists or the car has no date. ``date + interval 'N months'`` clamps to the month's end, as
    ``_add_months``; the km date is ``ceil`` of the exact quotient, as ``due_on``'s floor division."""
    months = sa.func.coalesce(MODEL_INTERVAL.c.months, DEFAULT_INTERVAL.c.months)
    km = sa.func.coalesce(MODEL_INTERVAL.c.km, DEFAULT_INTERVAL.c.km)
    by_months = sa.cast(
        sa.func.coalesce(Vehicle.last_service_on, Vehicle.purchase_date)
        + months * sa.literal_column("interval '1 month'"),
        sa.Date,
    )
    days_driven = Vehicle.last_service_on - Vehicle.purchase_date
    # within KM_DAYS_CAP, as in due_on: an absurd reading must not overflow the cast or the date
    exact_days = sa.func.ceil(sa.cast(km, sa.Numeric) * days_driven / Vehicle.last_service_km)
    km_days = sa.cast(sa.func.greatest(sa.func.least(exact_days, KM_DAYS_CAP), -KM_DAYS_CAP), sa.Integer)
    by_km = sa.case(
        (
            sa.and_(Vehicle.last_service_on > Vehicle.purchase_date, Vehicle.last_service_km != 0),
            Vehicle.last_service_on + km_days,
        ),
    )
    return sa.type_coerce(sa.func.least(by_months, by_km), sa.Date)


def interval_for(model_code: str) -> MaintenanceInterval | None:
    return db.session.get(MaintenanceInterval, model_code) or db.session.get(MaintenanceInterval, "default")
