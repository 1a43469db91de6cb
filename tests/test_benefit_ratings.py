"""After a booking: points given back into their lots on a cancel, the member's 1–5 rating, and a
low rating announced for a customer-service callback."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.benefits import booking
from app.core.clock import utcnow
from app.core.db import db
from app.points import queries
from app.points.models import PointEntry, PointLot
from tests import factories
from tests.benefit_helpers import give_points, seed_catalog, slot


@pytest.fixture
def program(app_ctx):
    seed_catalog()
    return factories.dealer(code="D0601")


def book(member, dealer_slot, code="home_test_drive"):
    return booking.book(
        member, benefit_code=code, request_id=f"req-{member.id}-{utcnow().timestamp()}", slot_id=dealer_slot.id
    ).booking


def test_cancelling_a_points_booking_refunds_into_the_same_lot_with_its_expiry(program):
    member = factories.member()
    give_points(member, 1500)
    lot = db.session.scalar(sa.select(PointLot).where(PointLot.member_id == member.id))
    lots_before = db.session.scalar(sa.select(sa.func.count()).where(PointLot.member_id == member.id))
    made = book(member, slot(program))
    booking.cancel(member, made.id)
    refund = db.session.scalar(sa.select(PointEntry).where(PointEntry.idempotency_key == f"benefit:refund:{made.id}"))
    assert (refund.kind, refund.points, refund.reason_code) == ("refund", 1000, "benefit_cancelled")
    db.session.refresh(lot)
    assert (lot.remaining, lot.status) == (1500, "available")  # no new lot with a new expiry
    assert db.session.scalar(sa.select(sa.func.count()).where(PointLot.member_id == member.id)) == lots_before
    assert queries.balance(member.id).available == 1500
