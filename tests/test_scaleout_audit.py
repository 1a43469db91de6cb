"""The audit that ``bench/scaleout.py`` runs after its load: each check is SQL against the current
schema, so a renamed column or table would only show in a benchmark run. Here every check runs on
a consistent database (no rows: nothing to report) and the checks that matter most find a planted
inconsistency."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.benefits import slots
from app.core.clock import utcnow
from app.core.db import db
from app.points import ledger
from bench.scaleout import CHECKS
from tests import factories

pytestmark = pytest.mark.postgres


def _failing() -> dict[str, list]:
    found = {label: db.session.execute(sa.text(query)).all() for label, query in CHECKS}
    return {label: rows for label, rows in found.items() if rows}


@pytest.fixture
def consistent(app_ctx) -> tuple[int, int]:
    """A member who earned and spent, and a published slot: a small consistent database."""
    member = factories.member()
    ledger.earn(
        ledger.Earning(member_id=member.id, currency="reward", points=500, idempotency_key="e1", source_type="test")
    )
    ledger.spend(member.id, 120, idempotency_key="s1", source_type="test")
    start = utcnow().replace(microsecond=0) + dt.timedelta(days=2)
    slot = slots.publish_slot(
        factories.dealer(),
        service_type="test_drive",
        starts_at=start,
        ends_at=start + dt.timedelta(minutes=45),
        capacity=2,
        actor="test",
    )
    db.session.flush()
    return member.id, slot.id


def test_every_audit_check_runs_and_passes_on_a_consistent_database(consistent):
    assert _failing() == {}


def test_the_audit_finds_a_balance_that_is_not_its_entries(consistent):
    member_id, _slot_id = consistent
    db.session.execute(
        sa.text("UPDATE point_accounts SET reward_available = reward_available + 1 WHERE member_id = :m"),
        {"m": member_id},
    )
    failing = _failing()
    assert set(failing) == {
        "balances: available + pending = the sum of the account's reward entries",
        "lots: available = spendable lots - debt, pending = pending and held lots, 0 <= remaining <= points",
    }
    assert failing["balances: available + pending = the sum of the account's reward entries"] == [
        (member_id, 381, 0, 380)
    ]


def test_the_audit_finds_a_seat_taken_without_a_booking(consistent):
    _member_id, slot_id = consistent
    db.session.execute(sa.text("UPDATE dealer_slots SET booked = 1 WHERE id = :s"), {"s": slot_id})
    assert _failing() == {"slots: booked = live bookings, within capacity": [(slot_id, 2, 1, 0)]}


def test_the_audit_finds_an_event_left_waiting(consistent):
    db.session.execute(
        sa.text(
            "INSERT INTO inbound_events (source, external_id, type, received_at, status, attempts)"
            " VALUES ('dms', 'x-1', 'vehicle.delivered', now(), 'received', 0)"
        )
    )
    assert _failing() == {
        "inbox: every event processed (none received, failed or dead)": [("dms", "vehicle.delivered", "received", 1)]
    }
