"""Booking exactly once under concurrency, on PostgreSQL with real commits: no slot overbooked,
no quota used twice, one outcome for a cancel racing its check-in, one booking per request id."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from app.benefits import booking
from app.benefits.models import Booking, DealerSlot, EntitlementEntry
from app.core import tunables
from app.core.db import db
from app.dealers.models import Dealer, Staff
from app.members.models import Member
from tests import factories
from tests.benefit_helpers import seed_catalog, set_tier, slot, today_slot
from tests.conftest import run_concurrently

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def in_own_context(app, fn):
    """Run ``fn`` as one unit of work of its own (app context, session, commit or roll back)."""
    with app.app_context():
        try:
            result = fn()
            db.session.commit()
            return result
        except Exception as exc:
            db.session.rollback()
            return exc


def setup(app, *, members: int, tier: str, capacity: int, service_type: str):
    with app.app_context():
        seed_catalog()
        dealer = factories.dealer(code="D0700")
        staff = factories.staff(dealer, code="SA0700", role="service_advisor")
        rows = [factories.member() for _ in range(members)]
        for row in rows:
            set_tier(row, tier)
        dealer_slot = slot(dealer, service_type, capacity=capacity)
        db.session.commit()
        return [r.id for r in rows], dealer_slot.id, dealer.id, staff.id


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def test_500_bookings_of_one_slot_of_20_book_exactly_20(app):
    member_ids, slot_id, _dealer, _staff = setup(app, members=50, tier="gold", capacity=20, service_type="maintenance")

    def attempt(i: int):
        def book():
            member = db.session.get(Member, member_ids[i % len(member_ids)])
            return booking.book(member, benefit_code="vip_lane", request_id=f"vip-{i:06d}", slot_id=slot_id).new

        return in_own_context(app, book)

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(attempt, range(500)))
    kinds = Counter(type(o).__name__ if isinstance(o, Exception) else o for o in outcomes)
    assert kinds == {True: 20, "SlotFull": 480}, kinds
    with app.app_context():
        assert db.session.get(DealerSlot, slot_id).booked == 20
    assert count(app, Booking) == 20  # the refused ones left nothing behind
    assert count(app, EntitlementEntry, EntitlementEntry.kind == "use") == 20


def test_one_member_racing_five_bookings_for_the_last_quota_gets_exactly_one(app):
    [member_id], slot_id, _dealer, _staff = setup(app, members=1, tier="gold", capacity=10, service_type="test_drive")

    def attempt(i: int):
        def book():
            member = db.session.get(Member, member_id)
            return booking.book(member, benefit_code="home_test_drive", request_id=f"drive-{i:04d}", slot_id=slot_id)

        return in_own_context(app, book)

    outcomes = run_concurrently(5, attempt)
    assert Counter(type(o).__name__ for o in outcomes) == {"Booked": 1, "QuotaUsedUp": 4}
    with app.app_context():
        kinds = Counter(
            db.session.scalars(
                sa.select(EntitlementEntry.kind).where(EntitlementEntry.benefit_code == "home_test_drive")
            )
        )
        assert kinds == {"grant": 1, "use": 1}
        assert db.session.get(DealerSlot, slot_id).booked == 1


def test_a_cancel_racing_its_check_in_has_one_outcome(app):
    member_ids, _slot, dealer_id, staff_id = setup(
        app, members=6, tier="platinum", capacity=10, service_type="test_drive"
    )
    with app.app_context():
        # no cut-off: a cancel of today's booking restores the quota, so a lost race would show twice
        tunables.set_value("benefits.cancel_cutoff_hours", 0, actor=("staff", "test"))
        db.session.commit()
    tunables.forget_shared_snapshot()
    with app.app_context():
        bookings = []
        for member_id in member_ids:
            member = db.session.get(Member, member_id)
            todays = today_slot(db.session.get(Dealer, dealer_id))
            bookings.append(
                booking.book(
                    member, benefit_code="home_test_drive", request_id=f"r-{member_id}-x", slot_id=todays.id
                ).booking.id
            )
        db.session.commit()

    for member_id, booking_id in zip(member_ids, bookings, strict=True):

        def race(i: int, member_id=member_id, booking_id=booking_id):
            def cancel():
                return booking.cancel(db.session.get(Member, member_id), booking_id).status

            def check_in():
                staff = db.session.get(Staff, staff_id)
                return booking.check_in(staff, db.session.get(Member, member_id), booking_id).status

            return in_own_context(app, cancel if i == 0 else check_in)

        outcomes = run_concurrently(2, race)
        winners = [o for o in outcomes if isinstance(o, str)]
        losers = [o for o in outcomes if isinstance(o, booking.BookingClosed)]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        with app.app_context():
            row = db.session.get(Booking, booking_id)
            restored = db.session.scalar(
                sa.select(sa.func.count()).where(
                    EntitlementEntry.booking_id == booking_id, EntitlementEntry.kind == "restore"
                )
            )
            slot_row = db.session.get(DealerSlot, row.slot_id)
            assert row.status == winners[0]
            if row.status == "delivered":
                assert (restored, slot_row.booked, row.cancelled_at) == (0, 1, None)
            else:
                assert (row.status, restored, slot_row.booked, row.delivered_at) == ("cancelled", 1, 0, None)


def test_the_same_request_id_from_ten_threads_makes_one_booking(app):
    [member_id], slot_id, _dealer, _staff = setup(
        app, members=1, tier="diamond", capacity=10, service_type="test_drive"
    )

    def attempt(_i: int):
        def book():
            member = db.session.get(Member, member_id)
            return booking.book(
                member, benefit_code="home_test_drive", request_id="double-tap-1", slot_id=slot_id
            ).booking.id

        return in_own_context(app, book)

    outcomes = run_concurrently(10, attempt)
    assert len(set(outcomes)) == 1 and all(isinstance(o, int) for o in outcomes), outcomes
    assert count(app, Booking) == 1
    assert count(app, EntitlementEntry, EntitlementEntry.kind == "use") == 1
    with app.app_context():
        assert db.session.get(DealerSlot, slot_id).booked == 1
