"""What delivered benefits cost, for the dealer settlement: per delivering dealer, benefit and
funder, the month's deliveries and their cost (copied onto each booking when it was made)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.benefits.models import Booking
from app.core.db import db
from app.points.settlement import CostLine


def delivered_cost_lines(starts_at: dt.datetime, ends_at: dt.datetime) -> list[CostLine]:
    """Bookings delivered in [starts_at, ends_at) at a dealer, summed per (dealer, benefit, funder)."""
    rows = db.session.execute(
        sa.select(
            Booking.dealer_id, Booking.benefit_code, Booking.funder, sa.func.count(), sa.func.sum(Booking.cost_fen)
        )
        .where(
            Booking.status == "delivered",
            Booking.dealer_id.is_not(None),
            Booking.delivered_at >= starts_at,
            Booking.delivered_at < ends_at,
        )
        .group_by(Booking.dealer_id, Booking.benefit_code, Booking.funder)
    )
    return [
        CostLine(dealer_id=dealer_id, code=code, funder=funder, quantity=int(count), amount_fen=int(total or 0))
        for dealer_id, code, funder, count, total in rows
    ]
