"""Lookups of dealers and staff used by the channels and the enrollment flows."""

from __future__ import annotations

import math
import threading
import time

import sqlalchemy as sa

from app.core.db import db
from app.dealers.models import Dealer, Staff


def dealer_by_code(code: str) -> Dealer | None:
    return db.session.scalar(sa.select(Dealer).where(Dealer.code == code))


#: How long a process trusts that a dealer code it read exists (DMS intake asks on every event).
#: Only codes found are kept: an unknown code is read again every time (so it stays a 422 until the
#: dealer is created, and is accepted from the first request after). Dealers are never deleted.
DEALER_CODE_SECONDS = 60.0
_DEALER_CODES_MAX = 10_000
_known_codes: dict[str, float] = {}  # code -> monotonic time it was read
_known_codes_lock = threading.Lock()


def dealer_code_exists(code: str) -> bool:
    """Whether a dealer has this code: the process's recent answer, or a one-column read."""
    now = time.monotonic()
    read_at = _known_codes.get(code)
    if read_at is not None and now - read_at < DEALER_CODE_SECONDS:
        return True
    if db.session.scalar(sa.select(Dealer.id).where(Dealer.code == code)) is None:
        return False
    with _known_codes_lock:
        if len(_known_codes) >= _DEALER_CODES_MAX:
            _known_codes.clear()
        _known_codes[code] = now
    return True


def forget_dealer_codes() -> None:
    """Drop the process's known dealer codes (tests between tests)."""
    with _known_codes_lock:
        _known_codes.clear()


def staff_at_dealer(staff_code: str | None, dealer: Dealer) -> Staff | None:
    """The active staff member with this code at this dealer, or None."""
    if not staff_code:
        return None
    return db.session.scalar(
        sa.select(Staff).where(Staff.staff_code == staff_code, Staff.dealer_id == dealer.id, Staff.active)
    )


def distance_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance (haversine)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi, d_lambda = math.radians(lat2 - lat1), math.radians(lng2 - lng1)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(a))


def nearest_dealers(latitude: float, longitude: float, limit: int = 3) -> list[tuple[Dealer, float]]:
    """Active dealers with a location, nearest first, with their distance in km.

    A few hundred dealers: computing in Python is simpler than a geo index and fast enough.
    """
    dealers = db.session.scalars(
        sa.select(Dealer).where(Dealer.active, Dealer.latitude.is_not(None), Dealer.longitude.is_not(None))
    ).all()
    ranked = sorted(
        ((dealer, distance_km(latitude, longitude, dealer.latitude, dealer.longitude)) for dealer in dealers),  # type: ignore[arg-type]
        key=lambda pair: pair[1],
    )
    return ranked[:limit]


def active_dealers(*, city: str | None, region: str | None, page: int, per_page: int) -> tuple[list[Dealer], int]:
    """One page of active dealers (by code), optionally in a city or region, and the total."""
    query = sa.select(Dealer).where(Dealer.active)
    if city:
        query = query.where(Dealer.city == city)
    if region:
        query = query.where(Dealer.region == region)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(query.order_by(Dealer.code).offset((page - 1) * per_page).limit(per_page))
    return list(rows), total


def active_staff(staff_code: str) -> Staff | None:
    """The active staff member with this code (at any dealer)."""
    return db.session.scalar(sa.select(Staff).where(Staff.staff_code == staff_code, Staff.active))
