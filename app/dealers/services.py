"""Lookups of dealers and staff used by the channels and the enrollment flows."""

from __future__ import annotations

import sqlalchemy as sa

from app.core.db import db
from app.dealers.models import Dealer, Staff


def dealer_by_code(code: str) -> Dealer | None:
    return db.session.scalar(sa.select(Dealer).where(Dealer.code == code))


def staff_at_dealer(staff_code: str | None, dealer: Dealer) -> Staff | None:
    """The active staff member with this code at this dealer, or None."""
    if not staff_code:
        return None
    return db.session.scalar(
        sa.select(Staff).where(Staff.staff_code == staff_code, Staff.dealer_id == dealer.id, Staff.active)
    )
