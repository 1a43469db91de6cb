"""The booking hot path's database round trips, counted (not timed), so a change that adds a
statement to every booking shows up here rather than only in ``bench/booking.py``; and the
process's copy of the catalog in force, which saves two of them, seen to follow a publish."""

from __future__ import annotations

import datetime as dt

import pytest

from app.benefits import catalog
from app.benefits.models import Booking, DealerSlot
from app.core.clock import utcnow
from app.core.db import db
from app.members import registration, sessions
from tests import factories
from tests.benefit_helpers import seed_catalog, set_tier, slot
from tests.statement_helpers import Statements

pytestmark = [pytest.mark.postgres, pytest.mark.committed]

#: A first booking of a quota benefit in a slot, through the API (BEGIN and COMMIT not counted):
#: session with the member's tier, slot with its dealer, booking insert (a resend conflicts here),
#: holder lock, entitlement sums, use row, seat, consents, opt-outs, confirmation and reminder in
#: one insert. The balance read, the benchmark's floor, is 3.
BOOKING_STATEMENTS = 10
#: A resend of the same request: session with the tier, slot, the insert that conflicts, the booking.
RESEND_STATEMENTS = 4


def _diamond_member_with_a_slot(app):
    with app.app_context():
        seed_catalog()
        dealer = factories.dealer(code="D0801")
        seat = slot(dealer, capacity=5)
        identity = sessions.sign_in("o-stmt-1", "session-key", None).identity
        member = registration.register(
            identity,
            policy_version=registration.POLICY_VERSION.value(),
            purposes=["service_notifications"],
            phone="13700000801",
        ).member
        set_tier(member, "diamond")
        token = sessions.sign_in("o-stmt-1", "session-key", None).token
        db.session.commit()
        return token, seat.id


def test_a_booking_through_the_api_costs_a_pinned_number_of_statements(app, client):
    token, slot_id = _diamond_member_with_a_slot(app)
    headers = {"Authorization": f"Bearer {token}"}

    def book(request_id):
        body = {"benefit": "home_test_drive", "slot": slot_id, "request_id": request_id}
        return client.post("/api/v1/me/bookings", json=body, headers=headers)

    assert book("warm-the-catalog-01").status_code == 201  # the process reads the catalog once
    with Statements(until_commit=True) as sent:
        booked = book("counted-booking-01")
    assert booked.status_code == 201, booked.json
    assert booked.json["slot"]["available"] == 3 and booked.json["dealer_code"] == "D0801"
    assert len(sent) == BOOKING_STATEMENTS, "\n".join(sent)
    with Statements(until_commit=True) as sent:
        again = book("counted-booking-01")
    assert again.json["id"] == booked.json["id"]
    assert len(sent) == RESEND_STATEMENTS, "\n".join(sent)
    with app.app_context():  # what the answer said without reading back is what was stored
        row = db.session.get(Booking, booked.json["id"])
        assert (row.status, row.paid_with, row.points_spent, row.rating) == ("booked", "quota", 0, None)
        assert db.session.get(DealerSlot, slot_id).booked == 2


def test_the_cached_catalog_is_read_once_and_dropped_when_a_version_is_published(app):
    with app.app_context():
        seed_catalog()
        db.session.commit()
    with app.app_context(), Statements(until_commit=True) as sent:
        first = catalog.benefit_in_force("home_test_drive")
        catalog.benefit_in_force("airport_lounge")
        assert len(catalog.benefits_in_force()) == 7
    assert sum("FROM benefit_catalogs" in s for s in sent) == 1  # then served from the process
    with app.app_context():
        draft = catalog.draft_from_published("2027", actor="op")
        items = [catalog.benefit_to_json(b) for b in draft.benefits]
        items[0]["quotas"] = {"gold": 2, "platinum": 3, "diamond": 4}
        catalog.replace_benefits(draft, items, actor="op")
        catalog.publish(draft, actor="op")
        # this unit of work sees its own version before the commit, and does not share it
        assert catalog.benefit_in_force("home_test_drive").quotas["gold"] == 2
        db.session.commit()
        new_id = draft.id
    with app.app_context():
        seen = catalog.benefit_in_force("home_test_drive")
        assert seen.catalog_id == new_id and seen.id != first.id and seen.quotas["gold"] == 2
        assert seen in db.session  # merged into the caller's session, usable like a loaded row
    with app.app_context():  # a version ends at its effective_to even while the copy is fresh
        later = utcnow() + dt.timedelta(days=1)
        successor = catalog.draft_from_published("2028", actor="op")
        catalog.publish(successor, actor="op", effective_from=later)
        db.session.commit()
        successor_id = successor.id
    with app.app_context():
        assert catalog.benefit_in_force("home_test_drive").catalog_id == new_id
        future = catalog.benefit_in_force("home_test_drive", later + dt.timedelta(minutes=1))
        assert future.catalog_id == successor_id
